"""Event-time skew: which rows the clock cannot believe (events/skew.py)."""

from __future__ import annotations

import numpy as np

from analyzer.cli import MAX_EVENT_SKEW
from analyzer.events.skew import DEFAULT_MAX_SKEW, lone_future, skewed

T = 1_795_662_000.0
YEAR_2200 = 7_258_118_400.0


def ts(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_a_row_far_ahead_of_its_neighbours_and_the_clock_is_future() -> None:
    batch = ts(T, T + 1, YEAR_2200, T + 2, T + 3)
    future, stale = skewed(batch, clock=T - 5)
    assert future.tolist() == [False, False, True, False, False] and not stale.any()
    future, _ = skewed(batch, clock=None)  # the first batch of a replay: the same
    assert future.tolist() == [False, False, True, False, False]


def test_a_real_gap_is_kept_and_only_a_lone_row_after_it_is_doubted() -> None:
    gap = ts(T, T + 1, T + 7200, T + 7201, T + 7202)
    future, stale = skewed(gap, clock=T)
    assert not future.any() and not stale.any()  # rows after the gap vouch for each other
    lone = ts(T + 1, T + 7200)  # the gap is the last row of its batch
    future, _ = skewed(lone, clock=T)
    assert future.tolist() == [False, True]
    hint = lone_future(lone, future)
    assert hint == T + 7200
    nxt, _ = skewed(ts(T + 7201), clock=T + 1, lone=hint)  # the next batch goes on from it
    assert not nxt.any()
    poison_again, _ = skewed(ts(T + 2), clock=T + 1, lone=YEAR_2200)  # poison: no effect
    assert not poison_again.any()
    stream = [skewed(ts(T + 7200 + k), clock=T, lone=None)[0][0] for k in range(3)]
    assert stream == [True, True, True]  # without the hint every lone row would be lost


def test_a_first_row_far_behind_the_rest_is_stale_and_late_rows_beyond_the_skew() -> None:
    old_first = ts(1_104_537_600.0, T, T + 1, T + 2)  # 2005, then today
    future, stale = skewed(old_first, clock=None)
    assert stale.tolist() == [True, False, False, False] and not future.any()
    late = ts(T, T - 30, T - DEFAULT_MAX_SKEW - 1, T + 1)
    _, stale = skewed(late, clock=T)
    assert stale.tolist() == [False, False, True, False]


def test_live_sources_are_bounded_by_the_wall() -> None:
    batch = ts(T, T + DEFAULT_MAX_SKEW - 1, T + DEFAULT_MAX_SKEW + 1)
    future, _ = skewed(batch, clock=T, wall=T)
    assert future.tolist() == [False, False, True]
    lone = ts(T + 3600)  # an hour ahead of the wall, alone: future even with a hint
    assert skewed(lone, clock=T, wall=T, lone=T + 3600)[0].tolist() == [True]
    backlog = ts(T - 86400, T - 86399)  # a day-old backlog read live is not in the future
    future, stale = skewed(backlog, clock=None, wall=T)
    assert not future.any() and not stale.any()


def test_the_cli_default_is_the_screens_default() -> None:
    assert MAX_EVENT_SKEW == DEFAULT_MAX_SKEW
