"""Pod churn: N runtimes adding and deleting pods on one node at once, in cycles per second.

Run as root:  python -m bench.cni_churn [--rounds N] [--concurrency N] [--cycles K]
                                        [--plugin [LABEL=]PATH ...] [--json]

A cycle is what one pod start and stop costs the network: ADD, then DEL with the ADD's
result as prevResult, each a fresh plugin process started as a runtime starts it. N
threads (the runtimes, default 16) each run K cycles (default 4) back to back, every
cycle with a new container ID; a case's figure for a round is N*K cycles divided by
the wall time from the first ADD to the last DEL. Each pyflannel executable is timed
cold and (unless --no-warm) relaying to its own `--serve` worker, as under flanneld,
against the reference bridge + host-local in the same rounds; the cases take turns
within a round, and which goes first rotates.

Each thread has its own pod namespace, made before the timing and reused for its
cycles (a runtime makes a namespace per pod, but that is the runtime's cost, not the
plugin's). Everything lives in namespaces this run creates and in a temp directory,
all removed at the end, also on failure or Ctrl-C. Any failed call stops the run, and
so does an IP reservation left after the last DEL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.cni_add_del import (
    Case,
    Invoker,
    Setup,
    add_common_arguments,
    check_common_arguments,
    check_reservations,
    drive,
    make_cases,
    measured_rounds,
    rotated,
    run_in_setup,
)

DEFAULT_CONCURRENCY, DEFAULT_CYCLES = 16, 4
MAX_CONCURRENCY = 64


@dataclass
class Churn:
    case: Case
    rates: list[float] = field(default_factory=list)      # cycles per second, per round


def cycles(invoke: Invoker, case: Case, pod: str, count: int) -> None:
    """`count` ADD/DEL cycles of one runtime in pod namespace `pod`."""
    for _ in range(count):
        ids = dict(container_id=f"churn-{uuid.uuid4().hex}", netns=pod, ifname="eth0")
        _, result = invoke(case, "ADD", case.conf, **ids)
        invoke(case, "DEL", dict(case.conf, prevResult=result), **ids)


def one_round(n: int, churns: list[Churn], pods: list[str], invoke: Invoker, count: int,
              pool: ThreadPoolExecutor, record: bool) -> None:
    for churn in rotated(churns, n):
        start = time.perf_counter_ns()
        for future in [pool.submit(cycles, invoke, churn.case, pod, count) for pod in pods]:
            future.result()
        seconds = (time.perf_counter_ns() - start) / 1e9
        if record:
            churn.rates.append(len(pods) * count / seconds)


def summarize(churns: list[Churn], concurrency: int, count: int) -> dict[str, Any]:
    """Median cycles/s per case, and each pyflannel case's median of per-round ratios
    against the reference (the last case)."""
    reference = churns[-1]
    out: dict[str, Any] = {"concurrency": concurrency, "cycles_per_runtime": count,
                           "plugins": {}, "ratios": {}}
    for churn in churns:
        out["plugins"][churn.case.key] = {
            "median_cycles_per_s": statistics.median(churn.rates),
            "min_cycles_per_s": min(churn.rates), "max_cycles_per_s": max(churn.rates),
            "rounds": [round(r, 2) for r in churn.rates]}
    for churn in churns[:-1]:
        out["ratios"][f"{churn.case.key}/{reference.case.key}"] = {
            "of_medians": statistics.median(churn.rates) / statistics.median(reference.rates),
            "median_of_paired": statistics.median(
                a / b for a, b in zip(churn.rates, reference.rates, strict=True))}
    return out


def print_report(summary: dict[str, Any], churns: list[Churn], rounds: int) -> None:
    print(f"ADD/DEL cycles per second: {summary['concurrency']} concurrent runtimes x "
          f"{summary['cycles_per_runtime']} cycles, {rounds} rounds after 1 warm-up round "
          "(-warm: relayed to the `--serve` worker)")
    width = max(22, *(len(c.case.label) for c in churns))
    print(f"{'':{width}} {'median':>8} {'min':>8} {'max':>8}")
    for churn in churns:
        st = summary["plugins"][churn.case.key]
        print(f"{churn.case.label:{width}} {st['median_cycles_per_s']:8.2f} "
              f"{st['min_cycles_per_s']:8.2f} {st['max_cycles_per_s']:8.2f}")
    reference = churns[-1].case
    for churn in churns[:-1]:
        r = summary["ratios"][f"{churn.case.key}/{reference.key}"]
        print(f"ratio {churn.case.label} / {reference.label}: of medians "
              f"{r['of_medians']:5.2f}x   median of per-round ratios "
              f"{r['median_of_paired']:5.2f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cni_churn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"concurrent runtimes (default {DEFAULT_CONCURRENCY})")
    p.add_argument("--cycles", type=int, default=DEFAULT_CYCLES,
                   help=f"ADD/DEL cycles per runtime a round (default {DEFAULT_CYCLES})")
    add_common_arguments(p)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        p.error("--rounds must be in 1..100")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        p.error(f"--concurrency must be in 1..{MAX_CONCURRENCY}")
    if not 1 <= args.cycles <= 100:
        p.error("--cycles must be in 1..100")
    check_common_arguments(p, args)
    args.masq = False
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    def measure(setup: Setup) -> dict[str, Any]:
        (cases,) = make_cases(setup.tmp, setup.tag, setup.plugins, setup.workers,
                              args.cni_bin, masq=False)
        churns = [Churn(case) for case in cases]
        pods = [setup.spaces.path(setup.spaces.make("pfchurn"))
                for _ in range(args.concurrency)]
        with ThreadPoolExecutor(args.concurrency) as pool:
            one_round(0, churns, pods, setup.invoke, 1, pool, record=False)   # warm-up
            done = measured_rounds(args.rounds, args.budget, lambda n: one_round(
                n, churns, pods, setup.invoke, args.cycles, pool, record=True))
        check_reservations(cases)
        summary = summarize(churns, args.concurrency, args.cycles)
        summary["rounds"] = done
        return {"summary": summary, "churns": churns}

    return run_in_setup(args, "pfchurn", measure)


def main(argv: list[str] | None = None) -> int:
    return drive(parse_args(argv), run, lambda res: print_report(
        res["summary"], res["churns"], res["summary"]["rounds"]))


if __name__ == "__main__":
    sys.exit(main())
