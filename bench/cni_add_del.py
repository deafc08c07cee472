"""Cold ADD/DEL/VERSION timings: pyflannel against the reference bridge + host-local pair.

Run as root:  python -m bench.cni_add_del [--rounds N] [--json] [--plugin [LABEL=]PATH ...]

Several pyflannel executables can be timed side by side (`--plugin` repeated, e.g. the
virtualenv's console script and the PyInstaller build), each against the reference and
against each other, in the same rounds.

Every invocation is a fresh plugin process started the way a container runtime
starts it: CNI_* variables in the environment, the network configuration on stdin
(for DEL with the ADD result as `prevResult`, as libcni sends it), run in the
"node" network namespace. The driver enters that namespace itself (setns), so the
timer around each `subprocess.run` covers the plugin process only - no
`ip netns exec` in the measurement.

Everything lives in namespaces this run creates (unique names) and in a temp
directory; all of it is removed at the end, also on failure or Ctrl-C. Nothing is
added to the namespace the driver was started in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from lab.netns import Namespaces, inside
from lab.plugin import invoke, subnet_env_text

# Where the reference plugins usually are: upstream's release tarballs, then Debian's package.
CNI_BIN_CANDIDATES = ("/opt/cni/bin", "/usr/lib/cni")
CNI_VERSION = "1.0.0"
OPS = ("VERSION", "ADD", "DEL")
MAX_ROUNDS = 500  # pod namespaces (one per case a round) are kept until the end of the run


T = TypeVar("T")


class BenchError(RuntimeError):
    pass


# --- namespaces -------------------------------------------------------------------------

class NodeNamespaces(Namespaces):
    """The lab's namespaces (unique names, all removed on cleanup), plus the driver's own
    move into the node namespace, so no `ip netns exec` sits inside the timings."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = contextlib.ExitStack()

    def enter(self, name: str) -> None:
        """Move this (single-threaded) process into netns `name`; children inherit it."""
        self.entered.enter_context(inside(self.path(name)))
        here, there = os.stat("/proc/thread-self/ns/net"), os.stat(self.path(name))
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            raise BenchError(f"setns into {name} did not take effect")

    def leave(self) -> None:
        self.entered.close()

    def cleanup(self) -> None:
        try:
            self.leave()
        finally:
            super().cleanup()  # deleting a netns deletes every device in it


# --- one plugin ------------------------------------------------------------------------

@dataclass
class Case:
    key: str            # short id used in the JSON output
    label: str
    plugin: str
    conf: dict[str, Any]
    cni_path: str
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)    # PYFLANNEL_SOCKET for a warm case
    samples: dict[str, list[int]] = field(default_factory=lambda: {op: [] for op in OPS})


class Invoker:
    """Runs a case's plugin with the lab's invoker (in the namespace this process is in) and
    insists on success; the time is the plugin process's alone."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.true = shutil.which("true") or "true"
        self.floor_samples: list[int] = []

    def __call__(self, case: Case, command: str, stdin: dict[str, Any], *,
                 container_id: str = "", netns: str = "",
                 ifname: str = "") -> tuple[int, dict[str, Any]]:
        data = json.dumps(stdin)
        try:
            got = invoke(command, data, node=None, container_id=container_id, netns=netns,
                         ifname=ifname, timeout=self.timeout, plugin=case.plugin,
                         path=case.cni_path, extra_env=case.env)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{case.label} {command} timed out after {self.timeout:g} s\n"
                             f"stdout: {_text(e.stdout)}\nstderr: {_text(e.stderr)}") from None
        out: dict[str, Any] = {}
        problem = f"exit code {got.code}" if got.code != 0 else ""
        if got.stdout.strip():
            try:
                out = json.loads(got.stdout)
            except ValueError:
                problem = problem or "stdout is not JSON"
        elif command != "DEL":
            problem = problem or "no result on stdout"
        if not problem and "code" in out:
            problem = f"CNI error {out['code']}"
        if problem:
            raise BenchError(
                f"{case.label} {command} failed: {problem}\n"
                f"  CNI_CONTAINERID={container_id} CNI_NETNS={netns} CNI_IFNAME={ifname}\n"
                f"  stdin:  {data}\n  stdout: {_text(got.stdout)}\n"
                f"  stderr: {_text(got.stderr)}")
        return got.elapsed_ns, out

    def floor(self) -> int:
        """A do-nothing process (`true`) spawned and timed the same way: the harness's share."""
        got = invoke("VERSION", "{}", node=None, ifname="", timeout=self.timeout,
                     plugin=self.true, path="")
        if got.code != 0:
            raise BenchError(f"{self.true} exited {got.code}")
        return got.elapsed_ns


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return (b.decode(errors="replace") if isinstance(b, bytes) else b).strip()


# --- the benchmark ----------------------------------------------------------------------

def variants(plugins: list[tuple[str, str]], warm: bool,
             cold: list[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(label, path, warm) per timed pyflannel: each executable cold and, with `warm`,
    relaying to its own `--serve` worker too (label-warm); then the `cold` ones (an
    earlier build without a warm path)."""
    return [(label + ("-warm" if w else ""), path, w) for label, path in plugins
            for w in ((False, True) if warm else (False,))] + [(c, p, False) for c, p in cold]


class Workers:
    """One `PATH --serve` worker per warm executable, as flanneld runs it, on a socket in
    the run's temp dir; stopped on exit."""

    def __init__(self, tmp: Path, plugins: list[tuple[str, str, bool]]) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sockets: dict[str, str] = {}
        for _label, path, warm in plugins:
            if warm and path not in self.sockets:
                self.sockets[path] = str(tmp / f"serve-{len(self.sockets)}.sock")
                log = open(tmp / f"serve-{len(self.procs)}.log", "w")  # noqa: SIM115
                self.procs.append(subprocess.Popen([path, "--serve", self.sockets[path]],
                                                   stdin=subprocess.DEVNULL, stdout=log,
                                                   stderr=subprocess.STDOUT))
                log.close()
        deadline = time.monotonic() + 30
        for sock in self.sockets.values():
            while not os.path.exists(sock):
                if time.monotonic() > deadline:
                    self.close()
                    raise BenchError(f"no CNI worker listening on {sock} after 30 s")
                time.sleep(0.02)

    def env(self, path: str, warm: bool) -> dict[str, str]:
        return {"PYFLANNEL_SOCKET": self.sockets[path] if warm else ""}

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make_cases(tmp: Path, tag: str, plugins: list[tuple[str, str, bool]], workers: Workers,
               cni_bin: str, masq: bool) -> list[list[Case]]:
    """Groups to interleave, one per ipMasq setting: each pyflannel variant (label, path,
    warm), all on bridge cni0 with one subnet file, then the reference on cni1."""
    (tmp / "subnet.env").write_text(subnet_env_text())
    groups = []
    for suffix, ip_masq in (("", False), ("-masq", True)) if masq else (("", False),):
        group = []
        for i, (label, plugin, warm) in enumerate(plugins):
            net, data = f"pfbench{tag}{i}{suffix}", tmp / f"{label}{suffix}"
            group.append(Case(
                key=label + suffix, label=label + suffix, plugin=plugin,
                cni_path=f"{os.path.dirname(os.path.abspath(plugin))}:{cni_bin}",
                data_dir=data / net, env=workers.env(plugin, warm),
                conf={"cniVersion": CNI_VERSION, "name": net, "type": "pyflannel",
                      "subnetFile": str(tmp / "subnet.env"), "dataDir": str(data),
                      "ipMasq": ip_masq}))
        net, data = f"pfbench{tag}r{suffix}", tmp / f"host-local{suffix}"
        group.append(Case(
            key="bridge" + suffix, label="bridge+host-local" + suffix,
            plugin=os.path.join(cni_bin, "bridge"), cni_path=cni_bin, data_dir=data / net,
            conf={"cniVersion": CNI_VERSION, "name": net, "type": "bridge", "bridge": "cni1",
                  "isGateway": True, "isDefaultGateway": True, "hairpinMode": True,
                  "ipMasq": ip_masq, "mtu": 1472,
                  "ipam": {"type": "host-local", "subnet": "10.244.2.0/24",
                           "dataDir": str(data)}}))
        groups.append(group)
    return groups


def rotated(cases: list[T], n: int) -> list[T]:
    """The cases starting at the n-th, so each goes first in turn (against order effects)."""
    k = n % len(cases)
    return cases[k:] + cases[:k]


def one_round(n: int, groups: list[list[Case]], spaces: Namespaces, invoke: Invoker,
              record: bool) -> None:
    """The spawn floor, VERSION of every plugin, then per case: new pod netns, ADD, DEL.

    The pod namespaces are not deleted here but at the end of the run: the kernel tears
    a deleted namespace down in a background worker, which would overlap (and slow)
    the next invocations."""
    floor = invoke.floor()
    if record:
        invoke.floor_samples.append(floor)
    for case in rotated(groups[0], n):
        elapsed, _ = invoke(case, "VERSION", {"cniVersion": CNI_VERSION})
        if record:
            case.samples["VERSION"].append(elapsed)
    for group in groups:
        for case in rotated(group, n):
            pod = spaces.make("pfbench")
            ids = dict(container_id=f"bench-{pod}",
                       netns=spaces.path(pod), ifname="eth0")
            add_time, result = invoke(case, "ADD", case.conf, **ids)
            del_time, _ = invoke(case, "DEL", dict(case.conf, prevResult=result), **ids)
            if record:
                case.samples["ADD"].append(add_time)
                case.samples["DEL"].append(del_time)


def leftover_reservations(cases: list[Case]) -> list[str]:
    left = []
    for case in cases:
        if case.data_dir.is_dir():
            for entry in case.data_dir.iterdir():
                try:
                    IPv4Address(entry.name)
                except ValueError:
                    continue
                left.append(f"{case.label}: {entry}")
    return left


def ms(ns: float) -> float:
    return ns / 1e6


def _stats(s: list[int]) -> dict[str, Any]:
    return {"median_ms": ms(statistics.median(s)), "min_ms": ms(min(s)), "max_ms": ms(max(s)),
            "samples_ms": [round(ms(x), 3) for x in s]}


def pairs_of(group: list[Case]) -> list[tuple[Case, Case]]:
    """Every case against every later one: pyflannel builds against each other, then
    each against the reference (last)."""
    return [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]


def summarize(groups: list[list[Case]], floor: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"spawn_floor": _stats(floor), "plugins": {}, "ratios": {}}
    for group in groups:
        for case in group:
            out["plugins"][case.key] = {op: _stats(s) for op, s in case.samples.items() if s}
        for a, b in pairs_of(group):
            ratios = out["ratios"].setdefault(f"{a.key}/{b.key}", {})
            for op in OPS:
                sa, sb = a.samples[op], b.samples[op]
                if sa and sb:
                    ratios[op] = {
                        "of_medians": statistics.median(sa) / statistics.median(sb),
                        "median_of_paired": statistics.median(
                            x / y for x, y in zip(sa, sb, strict=True)),
                    }
    return out


def print_report(summary: dict[str, Any], groups: list[list[Case]], rounds: int) -> None:
    print(f"plugin processes (-warm: relayed to the `--serve` worker), {rounds} rounds "
          "after 1 warm-up round; wall time in ms")
    width = max(22, *(len(c.label) for group in groups for c in group))
    print(f"{'':{width}} {'op':8} {'median':>8} {'min':>8} {'max':>8}")
    st = summary["spawn_floor"]
    print(f"{'spawn floor (true)':{width}} {'':8} {st['median_ms']:8.2f} {st['min_ms']:8.2f} "
          f"{st['max_ms']:8.2f}")
    for group in groups:
        for case in group:
            for op, st in summary["plugins"][case.key].items():
                print(f"{case.label:{width}} {op:8} {st['median_ms']:8.2f} "
                      f"{st['min_ms']:8.2f} {st['max_ms']:8.2f}")
        for a, b in pairs_of(group):
            print(f"ratio {a.label} / {b.label}:")
            for op, r in summary["ratios"][f"{a.key}/{b.key}"].items():
                print(f"  {op:8} of medians {r['of_medians']:6.2f}x   "
                      f"median of per-round ratios {r['median_of_paired']:6.2f}x")
        print()


def _default_cni_bin() -> str:
    for d in CNI_BIN_CANDIDATES:
        if os.access(os.path.join(d, "bridge"), os.X_OK):
            return d
    return CNI_BIN_CANDIDATES[0]


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options this benchmark shares with the churn one (bench.cni_churn)."""
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="time each pyflannel only cold, not also relaying its calls to its "
                        "`--serve` worker (flanneld's warm path)")
    p.add_argument("--plugin", action="append", type=_labelled, metavar="[LABEL=]PATH",
                   help="a pyflannel executable to time, repeatable; LABEL names it in the "
                        "report (default: its file name); default: the one beside this "
                        "python, e.g. --plugin built=build/dist/pyflannel/pyflannel "
                        "--plugin venv=.venv/bin/pyflannel")
    p.add_argument("--cold", action="append", type=_labelled, default=[],
                   metavar="[LABEL=]PATH", help="a pyflannel executable timed cold only "
                   "(one without `--serve`, e.g. an earlier commit's), repeatable")
    p.add_argument("--cni-bin", default=_default_cni_bin(),
                   help="directory of the reference plugins bridge and host-local "
                        f"(default: the first of {', '.join(CNI_BIN_CANDIDATES)} that has them)")
    p.add_argument("--timeout", type=float, default=30,
                   help="seconds allowed for one plugin invocation (default 30)")
    p.add_argument("--budget", type=float, default=300,
                   help="seconds for all rounds; stops early and reports past it (default 300)")


def check_common_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.plugin = args.plugin or [_labelled(os.path.join(os.path.dirname(sys.executable),
                                                         "pyflannel"))]
    labels = [label for label, _ in args.plugin + args.cold]
    if len(set(labels)) != len(labels) or "bridge" in labels:
        p.error("--plugin labels must be distinct and not 'bridge'")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cni_add_del", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=30, help="measured rounds (default 30)")
    p.add_argument("--no-masq", dest="masq", action="store_false",
                   help="skip the ipMasq=true group (iptables cost)")
    add_common_arguments(p)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        p.error(f"--rounds must be in 1..{MAX_ROUNDS}")
    check_common_arguments(p, args)
    return args


def _labelled(text: str) -> tuple[str, str]:
    """`LABEL=PATH` or `PATH` (labelled by its file name) -> (label, path)."""
    label, sep, path = text.partition("=")
    return (label, path) if sep else (os.path.basename(text), text)


def preflight(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (creates network namespaces)")
    needed = [path for _, path in args.plugin + args.cold] + [os.path.join(args.cni_bin, "bridge"),
                                                  os.path.join(args.cni_bin, "host-local")]
    for path in needed:
        if not os.access(path, os.X_OK):
            raise BenchError(f"not executable: {path}")
    tools = ["ip"] + (["iptables", "iptables-restore"] if args.masq else [])
    for tool in tools:
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found on PATH")


def _terminate(signum: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass
class Setup:
    """What a run of a CNI benchmark works in (this one's or bench.cni_churn's): the node
    namespace this process entered, the run's temp dir, the timed pyflannel variants
    with their `--serve` workers running."""
    tag: str
    spaces: NodeNamespaces
    tmp: Path
    invoke: Invoker
    plugins: list[tuple[str, str, bool]]
    workers: Workers


def run_in_setup(args: argparse.Namespace, prefix: str,
                 measure: Callable[[Setup], dict[str, Any]]) -> dict[str, Any]:
    """`measure` in a fresh Setup, then the clean-up whatever happened: the workers
    stopped, the namespaces and the temp dir removed."""
    preflight(args)
    tag = uuid.uuid4().hex[:8]
    spaces = NodeNamespaces()
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-{tag}-"))
    workers: Workers | None = None
    try:
        spaces.enter(spaces.make(prefix))
        plugins = variants(args.plugin, args.warm, args.cold)
        workers = Workers(tmp, plugins)
        return measure(Setup(tag, spaces, tmp, Invoker(args.timeout), plugins, workers))
    finally:
        # A second Ctrl-C must not cut the clean-up short: hold signals until it is done.
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            if workers is not None:
                workers.close()
            spaces.cleanup()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def measured_rounds(rounds: int, budget: float, one: Callable[[int], None]) -> int:
    """`one(n)` for rounds 1..`rounds`, stopping once `budget` seconds are spent; how many
    ran (BenchError: none)."""
    deadline = time.monotonic() + budget
    done = 0
    for n in range(1, rounds + 1):
        if time.monotonic() > deadline:
            print(f"time budget of {budget:g} s spent: stopping after {done} rounds",
                  file=sys.stderr)
            break
        one(n)
        done += 1
    if done == 0:
        raise BenchError("no round finished within the time budget")
    return done


def check_reservations(cases: list[Case]) -> None:
    left = leftover_reservations(cases)
    if left:
        raise BenchError("DEL left IP reservations behind:\n  " + "\n  ".join(left))


def run(args: argparse.Namespace) -> dict[str, Any]:
    def measure(setup: Setup) -> dict[str, Any]:
        groups = make_cases(setup.tmp, setup.tag, setup.plugins, setup.workers, args.cni_bin,
                            args.masq)
        one_round(0, groups, setup.spaces, setup.invoke, record=False)  # warm-up
        done = measured_rounds(args.rounds, args.budget, lambda n: one_round(
            n, groups, setup.spaces, setup.invoke, record=True))
        check_reservations([c for group in groups for c in group])
        summary = summarize(groups, setup.invoke.floor_samples)
        summary["rounds"] = done
        summary["warmup_rounds"] = 1
        return {"summary": summary, "groups": groups}

    return run_in_setup(args, "pfbench", measure)


def drive(args: argparse.Namespace, run: Callable[[argparse.Namespace], dict[str, Any]],
          report: Callable[[dict[str, Any]], None]) -> int:
    """A benchmark's main: run it, then print its summary (JSON with --json, else
    `report(result)`); a failure or an interruption is one line and an exit code."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        res = run(args)
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"bench failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; namespaces and temp files removed", file=sys.stderr)
        return 130
    if args.json:
        json.dump(res["summary"], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report(res)
    return 0


def main(argv: list[str] | None = None) -> int:
    return drive(parse_args(argv), run, lambda res: print_report(
        res["summary"], res["groups"], res["summary"]["rounds"]))


if __name__ == "__main__":
    sys.exit(main())
