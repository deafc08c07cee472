"""flanneld.core.replay against a brute-force model: the set of counters seen, and "below
highest - size + 1 is too old"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flanneld.core.replay import SIZE, ReplayWindow

TOP = 2**64 - 1


class Model:
    """What the window must decide, the slow way."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.seen: set[int] = set()
        self.highest = -1

    def fresh(self, counter: int) -> bool:
        return counter not in self.seen and counter >= self.highest - self.size + 1

    def record(self, counter: int) -> None:
        if counter >= self.highest - self.size + 1:
            self.seen.add(counter)
            self.highest = max(self.highest, counter)


def state(window: ReplayWindow, probes: list[int]) -> tuple[int, list[bool]]:
    return window.highest, [window.fresh(c) for c in probes]


def run(counters: list[int], size: int = SIZE) -> None:
    """Feed `counters` as a receiver does (fresh, then record what was fresh) to the window
    and the model; they agree at every step, also on counters around the window's edges."""
    window, model = ReplayWindow(size), Model(size)
    for counter in counters:
        accepted = window.fresh(counter)
        assert accepted == model.fresh(counter), (counter, model.highest)
        if accepted:
            window.record(counter)
            model.record(counter)
        assert window.highest == model.highest
    h = model.highest
    edges = {c for c in (h - size - 1, h - size, h - size + 1, h - size + 2, h - 1, h, h + 1)
             if 0 <= c <= TOP} | set(counters)
    assert [window.fresh(c) for c in sorted(edges)] == [model.fresh(c) for c in sorted(edges)]


# Counters drawn as a base plus small offsets, so they collide, reorder and cross the edge
# of the window often; bases near 0, in the middle and near 2**64 - 1.
bases = st.sampled_from([0, 5_000, 2**32, 2**63, TOP - 3 * SIZE]) | st.integers(0, TOP - 3 * SIZE)
offsets = st.lists(st.integers(0, 3 * SIZE), max_size=300)


@given(bases, offsets)
def test_the_window_decides_as_the_model_for_random_counters(base: int,
                                                             offs: list[int]) -> None:
    run([base + o for o in offs])


@given(st.lists(st.integers(0, TOP), max_size=100))
def test_the_window_decides_as_the_model_for_counters_anywhere(counters: list[int]) -> None:
    run(counters)


@given(st.sampled_from([64, 128, 192]), st.lists(st.integers(0, 600), max_size=400))
def test_small_windows_decide_as_the_model(size: int, counters: list[int]) -> None:
    run(counters, size)


@given(bases, offsets)
def test_recording_without_asking_matches_the_model(base: int, offs: list[int]) -> None:
    """record is safe on its own: a counter below the window changes nothing."""
    window, model = ReplayWindow(), Model()
    for c in (base + o for o in offs):
        window.record(c)
        model.record(c)
        assert window.highest == model.highest
    probes = sorted({base + o for o in offs} | {base + o + 1 for o in offs})
    assert [window.fresh(c) for c in probes if c <= TOP] == \
        [model.fresh(c) for c in probes if c <= TOP]


@given(bases, offsets, st.lists(st.integers(0, 3 * SIZE), max_size=50))
def test_fresh_never_changes_the_state(base: int, offs: list[int], asks: list[int]) -> None:
    window = ReplayWindow()
    for c in (base + o for o in offs):
        window.record(c)
    probes = sorted({base + o for o in offs + asks} | {base + 3 * SIZE + 1})
    before = state(window, probes)
    for c in (base + a for a in asks):
        window.fresh(c)
        window.fresh(c)
    assert state(window, probes) == before


def test_a_new_window_accepts_anything_once() -> None:
    window = ReplayWindow()
    assert window.highest == -1
    assert window.fresh(0) and window.fresh(TOP) and window.fresh(SIZE)
    window.record(0)
    assert not window.fresh(0)
    assert window.fresh(1) and window.highest == 0


def test_duplicates_are_refused_and_reordering_inside_the_window_is_accepted_once() -> None:
    window = ReplayWindow()
    order = [10, 5, 7, 10, 6, 5, 2047 + 5, 4, 6]
    accepted = []
    for c in order:
        if window.fresh(c):
            window.record(c)
            accepted.append(c)
    # 2052 leaves 5 as the lowest counter inside the window (2052 - 2048 + 1 = 5); 4 is too
    # old; the second 5 and 6 are replays.
    assert accepted == [10, 5, 7, 6, 2052]
    assert window.highest == 2052


def test_the_window_holds_exactly_size_counters() -> None:
    window = ReplayWindow()
    window.record(10_000)
    assert window.fresh(10_000 - SIZE + 1)
    assert not window.fresh(10_000 - SIZE)
    for c in range(10_000 - SIZE + 1, 10_000):
        assert window.fresh(c)
        window.record(c)
    assert not any(window.fresh(c) for c in range(10_000 - SIZE - 5, 10_001))


def test_a_far_jump_forgets_everything_below_the_new_window() -> None:
    window = ReplayWindow()
    for c in range(3000):
        window.record(c)
    window.record(10**12)
    assert not window.fresh(2999)
    assert window.fresh(10**12 - SIZE + 1) and window.fresh(10**12 - 1)
    assert not window.fresh(10**12)
    # Same slot as counter 2999 under the old highest, a new counter now.
    c = 10**12 - SIZE + 1 + ((2999 - (10**12 - SIZE + 1)) % SIZE)
    assert window.fresh(c)


def test_counters_near_the_top_of_64_bits() -> None:
    window = ReplayWindow()
    for c in (TOP - 2, TOP, TOP - 1, TOP - SIZE + 1):
        assert window.fresh(c)
        window.record(c)
    assert window.highest == TOP
    assert not any(window.fresh(c) for c in (TOP, TOP - 1, TOP - 2, TOP - SIZE + 1, TOP - SIZE))
    assert window.fresh(TOP - 3)


def test_a_stale_record_does_not_evict_a_counter_of_its_slot() -> None:
    window = ReplayWindow()
    window.record(5000)
    window.record(5000 - SIZE)          # below the window: ignored
    assert not window.fresh(5000)
    window.record(5000 - SIZE + 1)      # the lowest counter in it: kept
    assert not window.fresh(5000 - SIZE + 1)


def test_counter_out_of_64_bits_is_refused_by_record() -> None:
    window = ReplayWindow()
    with pytest.raises((ValueError, OverflowError)):
        window.record(2**64)
    assert window.highest == -1


@pytest.mark.parametrize("size", [0, -64, 100, 65])
def test_a_size_not_a_positive_multiple_of_64_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        ReplayWindow(size)


def test_the_default_size_is_2048() -> None:
    assert SIZE == 2048 and ReplayWindow().size == 2048
