"""manifests/pyflannel.yml: every document valid for the Kubernetes API (schemas bundled
with kubernetes-validate, strict: unknown fields fail; no network, no API server), the
ConfigMap's JSON accepted by the plugin's and the daemon's own parsers, the DaemonSet's
flags by flanneld's option parser, and its mounts consistent with both and with the image
layout."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
from kubernetes_validate import utils as kv

from cni.core import netconf
from flanneld.core import config as netconfig
from flanneld.io.etcd import EtcdOptions, check_options
from flanneld.network_config import read_file
from flanneld.options import ENV_PREFIX, parse

from .manifest import (
    ROOT,
    config_data,
    configmap_files,
    container,
    documents,
    find,
    main_container,
    mount_of,
    pod_spec,
)

NAMESPACE = "kube-pyflannel"
# The oldest and the newest Kubernetes whose schemas kubernetes-validate bundles.
KUBERNETES = (kv.all_versions()[0], kv.all_versions()[-1])


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_document_is_valid_for_the_api(version: str) -> None:
    for doc in documents():
        # SchemaNotFoundError (an unknown kind or apiVersion) fails the test as well.
        kv.validate(doc, version, strict=True)


def test_the_validation_is_strict() -> None:
    ds = copy.deepcopy(find("DaemonSet"))
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readonly"] = True
    with pytest.raises(kv.ValidationError, match="'readonly' was unexpected"):
        kv.validate(ds, KUBERNETES[-1], strict=True)


def test_the_documents() -> None:
    assert [(d["kind"], d["metadata"]["name"]) for d in documents()] == [
        ("Namespace", NAMESPACE), ("ServiceAccount", "pyflannel"), ("ClusterRole", "pyflannel"),
        ("ClusterRoleBinding", "pyflannel"), ("ConfigMap", "kube-pyflannel-cfg"),
        ("DaemonSet", "kube-pyflannel-ds")]
    labels = find("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    for doc in documents():
        if doc["kind"] in ("ServiceAccount", "ConfigMap", "DaemonSet"):
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_the_role_grants_nothing_and_binds_the_daemons_account() -> None:
    assert find("ClusterRole")["rules"] == []
    binding = find("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == find("ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pyflannel",
                                    "namespace": NAMESPACE}]
    assert pod_spec()["serviceAccountName"] == "pyflannel"
    assert find("ServiceAccount")["automountServiceAccountToken"] is False


def test_the_daemonset_runs_on_every_linux_node() -> None:
    spec = pod_spec()
    assert spec["hostNetwork"] is True
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["tolerations"] == [{"operator": "Exists", "effect": "NoSchedule"},
                                   {"operator": "Exists", "effect": "NoExecute"}]
    ds = find("DaemonSet")
    assert ds["spec"]["selector"]["matchLabels"].items() <= \
        ds["spec"]["template"]["metadata"]["labels"].items()


def test_every_image_is_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    spec = pod_spec()
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    assert images == {f"ghcr.io/pyflannel/pyflannel:{version}"}


def libcni_plugin_configs(conflist: dict) -> list[dict]:
    """Each plugin's config as libcni hands it over: the list's name and cniVersion
    injected (buildOneConfig), its capabilities only announced, not passed."""
    return [{**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
            for plugin in conflist["plugins"]]


def test_the_conflist_parses_with_the_plugins_loader() -> None:
    conflist = json.loads(config_data()["cni-conf.json"])
    assert (conflist["name"], conflist["cniVersion"]) == ("cbr0", "1.0.0")
    assert [p["type"] for p in conflist["plugins"]] == ["pyflannel", "portmap"]
    ours, portmap = libcni_plugin_configs(conflist)
    conf = netconf.parse(json.dumps(ours))
    assert (conf.name, conf.cni_version, conf.bridge, conf.data_dir) == \
        ("cbr0", "1.0.0", "cni0", "/var/lib/cni/pyflannel")
    assert conf.hairpin_mode and conf.is_default_gateway and conf.ip_masq is None
    assert conf.mtu is None  # from FLANNEL_MTU
    # The plugin reads the subnet file flanneld writes, under the mount shared with it.
    assert conf.subnet_file == daemon_options().subnet_file
    assert mount_of(main_container(), conf.subnet_file)[1]["hostPath"]["path"] == "/run/flannel"
    assert portmap["capabilities"] == {"portMappings": True}


def test_the_encrypted_mode_s_key_file_outlives_the_pod() -> None:
    """--udp-key-file's path is on a host directory, so a restarted pod keeps its key."""
    key_file = daemon_options().udp_key_file
    assert mount_of(main_container(), key_file)[1]["hostPath"] == {
        "path": "/var/lib/pyflannel", "type": "DirectoryOrCreate"}


def test_the_network_config_parses_with_flanneld_s_parser(tmp_path: Path) -> None:
    text = config_data()["net-conf.json"]
    assert netconfig.parse(text) == netconfig.parse(
        '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}')
    path = tmp_path / "net-conf.json"
    path.write_text(text)
    assert read_file(str(path)).text == text  # what flanneld writes to etcd, verbatim


def daemon_env() -> dict[str, str]:
    """The main container's environment, ConfigMap references resolved."""
    env = {}
    for var in main_container()["env"]:
        ref = var["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == find("ConfigMap")["metadata"]["name"]
        env[var["name"]] = config_data()[ref["key"]]
    return env


def daemon_options():
    c = main_container()
    assert c["command"] == ["/usr/local/bin/flanneld"]  # the image's layout
    return parse(c["args"], daemon_env())


def test_the_daemon_s_flags_parse_with_flanneld_s_parser() -> None:
    opts = daemon_options()
    assert all(name.startswith(ENV_PREFIX) for name in daemon_env())
    assert opts.ip_masq and opts.etcd_prefix == "/coreos.com/network"
    assert all(url.startswith("https://") for url in opts.etcd_endpoints)
    endpoints = check_options(EtcdOptions(opts.etcd_endpoints, opts.etcd_prefix,
                                          opts.etcd_cafile, opts.etcd_certfile,
                                          opts.etcd_keyfile))
    assert all(secure for _host, _port, secure in endpoints)


def test_the_daemon_reads_its_files_from_the_configmap_and_the_secret() -> None:
    opts, c = daemon_options(), main_container()
    assert configmap_files(c)[opts.net_config_path] == config_data()["net-conf.json"]
    for path in (opts.etcd_cafile, opts.etcd_certfile, opts.etcd_keyfile):
        mount, volume = mount_of(c, path)
        assert mount["readOnly"] is True
        secret = volume["secret"]
        assert secret["secretName"] == "pyflannel-etcd-tls"
        relative = path[len(mount["mountPath"].rstrip("/")) + 1:]
        assert relative in [item["path"] for item in secret["items"]]
    assert {item["key"] for item in secret["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    assert secret["defaultMode"] == 0o400


def test_the_probes_ask_flanneld_s_health_endpoint() -> None:
    opts, c = daemon_options(), main_container()
    for probe in (c["livenessProbe"], c["startupProbe"]):
        assert probe["httpGet"] == {"host": opts.healthz_ip, "port": opts.healthz_port,
                                    "path": "/healthz"}


def test_the_daemon_is_not_privileged_but_has_what_it_needs() -> None:
    c = main_container()
    assert c["securityContext"] == {"privileged": False, "capabilities": {
        "add": ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]}}     # SYS_ADMIN: the CNI warm path
    assert mount_of(c, "/var/lib/cni/pyflannel")[1]["hostPath"]["path"] == \
        "/var/lib/cni/pyflannel"
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    tun = mount_of(c, "/dev/net/tun")[1]["hostPath"]
    assert tun == {"path": "/dev/net/tun", "type": "CharDevice"}
    lock = mount_of(c, "/run/xtables.lock")[1]["hostPath"]
    assert lock == {"path": "/run/xtables.lock", "type": "FileOrCreate"}


def test_every_mount_has_a_volume_and_every_volume_is_mounted() -> None:
    spec = pod_spec()
    names = [v["name"] for v in spec["volumes"]]
    assert len(names) == len(set(names))
    mounted = set()
    for c in spec["initContainers"] + spec["containers"]:
        paths = [m["mountPath"] for m in c["volumeMounts"]]
        assert len(paths) == len(set(paths)), c["name"]
        for mount in c["volumeMounts"]:
            assert mount["name"] in names, (c["name"], mount)
            mounted.add(mount["name"])
    assert mounted == set(names)


def test_host_paths_are_mounted_where_they_are_on_the_host() -> None:
    """So that the paths the daemon and the install script use mean the same on the node
    (the plugin's symlink is relative, the subnet file's path is the plugin's default)."""
    spec = pod_spec()
    for c in spec["initContainers"] + spec["containers"]:
        for mount in c["volumeMounts"]:
            host = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            if "hostPath" in host:
                assert host["hostPath"]["path"] == mount["mountPath"], (c["name"], mount)


def test_the_init_containers_install_from_the_image_into_the_host() -> None:
    plugin = container("install-cni-plugin")["command"]
    assert plugin == ["/opt/pyflannel/install-cni", "plugin", "/opt/pyflannel/cni",
                      "/opt/cni/bin/pyflannel"]
    conflist = container("install-cni")["command"]
    assert conflist[:2] == ["/opt/pyflannel/install-cni", "conflist"]
    assert conflist[3] == "/etc/cni/net.d/10-pyflannel.conflist"
    assert configmap_files(container("install-cni"))[conflist[2]] == \
        config_data()["cni-conf.json"]
    for name, target in (("install-cni-plugin", plugin[3]), ("install-cni", conflist[3])):
        mount, volume = mount_of(container(name), target)
        assert volume["hostPath"]["type"] == "DirectoryOrCreate" and not mount.get("readOnly")
    for c in pod_spec()["initContainers"]:  # no volume hides the image's own files
        assert not any(m["mountPath"].startswith("/opt/pyflannel") for m in c["volumeMounts"])
