"""bench.cni_churn's summary and turn order, from made-up rates; the CNI benchmarks' round
loop and its time budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cni_add_del import BenchError, Case, measured_rounds, rotated
from bench.cni_churn import Churn, summarize


def churn(key: str, rates: list[float]) -> Churn:
    case = Case(key=key, label=key, plugin=f"/bin/{key}", conf={}, cni_path="",
                data_dir=Path("/nonexistent"))
    return Churn(case, list(rates))


def test_medians_per_case_and_paired_ratios_against_the_reference_last():
    churns = [churn("built", [10, 40, 30]), churn("built-warm", [30, 60, 20]),
              churn("bridge", [60, 80, 40])]
    out = summarize(churns, concurrency=16, count=4)
    assert out["concurrency"] == 16 and out["cycles_per_runtime"] == 4
    assert out["plugins"]["built"]["median_cycles_per_s"] == 30
    assert out["plugins"]["bridge"]["rounds"] == [60, 80, 40]
    assert list(out["ratios"]) == ["built/bridge", "built-warm/bridge"]
    warm = out["ratios"]["built-warm/bridge"]
    assert warm["of_medians"] == pytest.approx(30 / 60)
    # Per round: 0.5, 0.75, 0.5 -> 0.5 (the ratio of the medians could differ).
    assert warm["median_of_paired"] == pytest.approx(0.5)
    assert out["ratios"]["built/bridge"]["median_of_paired"] == pytest.approx(0.5)


def test_each_case_goes_first_in_turn():
    churns = [churn(k, []) for k in ("a", "b", "c")]
    firsts = [rotated(churns, n)[0].case.key for n in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    assert sorted(c.case.key for c in rotated(churns, 2)) == ["a", "b", "c"]


def test_rounds_run_in_order_until_the_budget_is_spent():
    ran: list[int] = []
    assert measured_rounds(3, 60, ran.append) == 3
    assert ran == [1, 2, 3]
    with pytest.raises(BenchError, match="no round finished"):
        measured_rounds(3, -1, ran.append)     # spent before the first round
    assert ran == [1, 2, 3]
