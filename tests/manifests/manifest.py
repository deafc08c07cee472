"""manifests/pyflannel.yml as the tests read it: its documents, the DaemonSet's containers,
their mounts and volumes, and the ConfigMap's files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifests" / "pyflannel.yml"
INSTALL_CNI = ROOT / "build" / "install-cni"


@cache
def documents() -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d)


def find(kind: str) -> dict:
    [doc] = [d for d in documents() if d["kind"] == kind]
    return doc


def pod_spec() -> dict:
    return find("DaemonSet")["spec"]["template"]["spec"]


def container(name: str) -> dict:
    spec = pod_spec()
    [found] = [c for c in spec["initContainers"] + spec["containers"] if c["name"] == name]
    return found


def main_container() -> dict:
    return container("kube-pyflannel")


def volume(name: str) -> dict:
    [found] = [v for v in pod_spec()["volumes"] if v["name"] == name]
    return found


def config_data() -> dict[str, str]:
    return find("ConfigMap")["data"]


def mount_of(container_spec: dict, path: str) -> tuple[dict, dict]:
    """The (volumeMount, volume) of `container_spec` under which `path` lies."""
    for mount in container_spec.get("volumeMounts", []):
        top = mount["mountPath"].rstrip("/")
        if path == top or path.startswith(top + "/"):
            return mount, volume(mount["name"])
    raise AssertionError(f"{path} is on no volume of container {container_spec['name']}")


def configmap_files(container_spec: dict) -> dict[str, str]:
    """Every file the ConfigMap volumes put into `container_spec`: path -> text."""
    files = {}
    for mount in container_spec.get("volumeMounts", []):
        if "configMap" in volume(mount["name"]):
            for key, text in config_data().items():
                files[f"{mount['mountPath'].rstrip('/')}/{key}"] = text
    return files
