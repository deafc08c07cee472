"""The worker pool's decisions (`cni.core.pool`): which waiting workers stay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cni.core.pool import IDLE_SECONDS, IDLE_WORKERS, keeps_waiting, retiring

NOW = 1000.0
times = st.lists(st.floats(min_value=0, max_value=NOW), max_size=IDLE_WORKERS).map(sorted)


def test_a_worker_done_with_its_call_waits_until_the_pool_is_full_or_stopping():
    assert keeps_waiting(0, stopping=False)
    assert keeps_waiting(IDLE_WORKERS - 1, stopping=False)
    assert not keeps_waiting(IDLE_WORKERS, stopping=False)
    assert not keeps_waiting(0, stopping=True)


def test_after_a_quiet_spell_only_the_next_calls_worker_stays():
    since = [NOW - IDLE_SECONDS - 5, NOW - IDLE_SECONDS - 1, NOW - IDLE_SECONDS]
    assert retiring(since, NOW) == [0, 1]
    assert retiring([NOW - 2 * IDLE_SECONDS], NOW) == []      # the last one stays
    assert retiring([NOW - IDLE_SECONDS + 1, NOW], NOW) == []  # not quiet long enough
    assert retiring([], NOW) == []


@given(times)
def test_the_last_stays_and_exactly_the_long_waiting_others_go(since):
    gone = retiring(since, NOW)
    assert len(since) - 1 not in gone
    assert gone == [i for i in range(len(since) - 1) if NOW - since[i] >= IDLE_SECONDS]
