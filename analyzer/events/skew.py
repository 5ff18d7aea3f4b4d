"""Event-time skew: rows whose timestamp is too far from the event clock to be believed.

Event time drives judging, so one line dated 2200 would move the clock centuries ahead (every
step would time out on the evidence it has), and an old first line (2005) would start the
rollout decades before its traffic. Such rows are rejected by reason before they reach the
clock:

- ``future_timestamp``: more than ``max_skew`` ahead of wall time, when the source is live
  (wall time is passed in); otherwise more than ``max_skew`` ahead of the clock *and* of every
  other row of its batch. A row after a real gap in traffic has neighbours after the gap, so it
  is kept; only a lone row (the last of its batch, right after a gap) is taken for poison.
- ``stale_timestamp``: more than ``max_skew`` behind the clock (or the rows before it in the
  batch); or, for the very first row of all, behind every row after it.

Must not: read clocks (wall time is passed in), or know rollouts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FUTURE = "future_timestamp"
STALE = "stale_timestamp"
DEFAULT_MAX_SKEW = 600.0
"""Seconds. Gateways flush access logs within seconds and clocks agree to well under a minute;
a row ten minutes off the clock is a broken clock or a broken line, not a late request."""

Mask = npt.NDArray[np.bool_]


def _shifted_max(ts: npt.NDArray[np.float64], initial: float) -> npt.NDArray[np.float64]:
    """For each row, the maximum of ``initial`` and every row before it."""
    before = np.empty_like(ts)
    before[0] = initial
    before[1:] = ts[:-1]
    return np.maximum.accumulate(before)


def skewed(
    ts: npt.NDArray[np.float64],
    clock: float | None,
    wall: float | None = None,
    max_skew: float = DEFAULT_MAX_SKEW,
    lone: float | None = None,
) -> tuple[Mask, Mask]:
    """(future, stale) masks over a batch's timestamps, in arrival order.

    ``lone``: the previous batch's last row, when it was rejected as a lone future row. If this
    batch begins near it, that was a real gap in traffic, not poison: the batch goes on from
    there (a stream of one row per batch loses one row per gap, not every row after it).
    """
    n = ts.size
    if n == 0:
        none: Mask = np.zeros(0, dtype=np.bool_)
        return none, none
    start = -np.inf if clock is None else clock
    if lone is not None and abs(float(ts[0]) - lone) <= max_skew:
        start = max(start, lone)
    before = _shifted_max(ts, start)  # the clock each row would meet
    if wall is not None:
        future: Mask = ts > wall + max_skew
    else:
        after = _shifted_max(ts[::-1], -np.inf)[::-1]  # the latest row after each one
        known = np.isfinite(before) | np.isfinite(after)  # a lone first row: nothing to say
        future = known & (ts > np.maximum(before, after) + max_skew)
    # Stale against the clock each row meets, counting only rows that are not in the future.
    kept_max = _shifted_max(np.where(future, -np.inf, ts), -np.inf if clock is None else clock)
    stale: Mask = ts < kept_max - max_skew
    if clock is None and n > 1:
        rest = ts[1:][~future[1:]]
        if rest.size and ts[0] < rest.min() - max_skew:
            stale[0] = True  # the first row of all, far behind everything after it
    return future, stale & ~future


def lone_future(ts: npt.NDArray[np.float64], future: Mask) -> float | None:
    """The batch's last row when it was rejected as a lone future row (see ``skewed``)."""
    return float(ts[-1]) if future.size and future[-1] else None
