"""Per rollout x step x group windows: request and error counts, and latency/token histograms.

Column batches are folded into the histograms in one numpy call per metric. The first
``raw_limit`` values of each metric are also kept raw, so small steps can be judged with exact
tests; past that only histograms grow, and memory stays bounded whatever the traffic.

Latency and token metrics come from successful requests only: a fast 503 says nothing about the
adapter's speed, and errors are judged by the error-rate check.

The first ``warmup`` seconds of a step (after a weight change: adapters loading, caches cold)
are folded into separate warm-up windows: counted and shown, kept out of the step's evidence.
Requests per group from ``SETTLE`` seconds into the step on are counted apart, whatever the
warm-up: the share of traffic the gateway really gives the canary once a route change has
reached it (rollout/guards.py compares it with the written one).

Must not: decide anything, or know where events come from.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.config import LatencyMetric
from analyzer.events.columns import Columns
from analyzer.events.units import tpot
from analyzer.stats.histogram import FloatArray, IntArray, LogHistogram

METRICS: tuple[LatencyMetric, ...] = (
    "ttft",
    "duration",
    "tpot",
    "prompt_tokens",
    "completion_tokens",
)
DEFAULT_RAW_LIMIT = 1000
SETTLE = 10.0
"""Seconds a gateway may take to apply new weights (config push, the endpoint picker's watch)."""


@dataclass
class MetricWindow:
    raw_limit: int = DEFAULT_RAW_LIMIT
    histogram: LogHistogram = field(default_factory=LogHistogram)
    raw: array[float] = field(default_factory=lambda: array("d"))

    def extend(self, values: FloatArray) -> None:
        if values.size == 0:
            return
        room = self.raw_limit - len(self.raw)
        if room > 0:
            self.raw.extend(values[:room].tolist())
        self.histogram.add(values)

    @property
    def count(self) -> int:
        return self.histogram.total

    def raw_values(self) -> FloatArray | None:
        """All values raw, or None once the window has outgrown ``raw_limit``."""
        if self.histogram.total > len(self.raw):
            return None
        return np.frombuffer(self.raw, dtype=np.float64).copy()

    def merge(self, other: MetricWindow) -> None:
        self.histogram.merge(other.histogram)
        room = self.raw_limit - len(self.raw)
        # Raw values stay usable only while both sides still hold all of theirs.
        if room >= len(other.raw) and other.histogram.total == len(other.raw):
            self.raw.extend(other.raw)
        else:
            self.raw = array("d", [])
            self.raw_limit = 0


@dataclass
class GroupWindow:
    raw_limit: int = DEFAULT_RAW_LIMIT
    requests: int = 0
    errors: int = 0
    by_target: Counter[str] = field(default_factory=Counter)
    kept: tuple[LatencyMetric, ...] = METRICS
    """The metrics some check reads; only these are folded into histograms."""
    metrics: dict[str, MetricWindow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics:
            self.metrics = {m: MetricWindow(self.raw_limit) for m in self.kept}

    def fold(self, cols: Columns, rows: IntArray) -> None:
        """Fold the events at ``rows`` of a column batch."""
        if rows.size == 0:
            return
        self.requests += int(rows.size)
        self.by_target.update(_named(cols, cols.target[rows]))
        errors = cols.is_error[rows]
        self.errors += int(errors.sum())
        ok = rows[~errors]
        if ok.size == 0:
            return
        for name, window in self.metrics.items():
            if name == "tpot":
                values = tpot(cols.ttft[ok], cols.duration[ok], cols.completion_tokens[ok])
            else:
                values = getattr(cols, name)[ok]
                values = values[~np.isnan(values)]
            window.extend(values)

    def merge(self, other: GroupWindow) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.by_target.update(other.by_target)
        for name, window in self.metrics.items():
            window.merge(other.metrics[name])


@dataclass
class StepWindows:
    """Both groups' windows for one step of one rollout, from ``started_at`` on."""

    baseline_adapters: frozenset[str]
    canary_adapters: frozenset[str]
    started_at: float
    raw_limit: int = DEFAULT_RAW_LIMIT
    metrics: tuple[LatencyMetric, ...] = METRICS
    """The metrics some check reads (others are not kept)."""
    baseline: GroupWindow = field(init=False)
    canary: GroupWindow = field(init=False)
    before_step: int = 0
    unrouted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    """Lines no parser could read while this step ran, by reason (they carry no time or model
    to be trusted, so they count against every running step)."""
    last_event_at: float | None = None
    watermarks: dict[Hashable, tuple[int, float]] = field(default_factory=dict)
    duplicates: int = 0
    warmup: float = 0.0
    """Seconds after ``started_at`` whose events go to the warm-up windows, not the evidence."""
    warm_baseline: GroupWindow = field(init=False)
    warm_canary: GroupWindow = field(init=False)
    ends_at: float | None = None
    """Where the next window of the rollout starts (None for the current step's)."""
    settled: list[int] = field(default_factory=lambda: [0, 0])
    """Requests of the baseline and the canary from ``SETTLE`` seconds into the step on."""
    cache: dict[str, object] = field(default_factory=dict)
    """What checks computed from these windows, keyed with the counts it was computed on."""

    def __post_init__(self) -> None:
        self.baseline = GroupWindow(self.raw_limit, kept=self.metrics)
        self.canary = GroupWindow(self.raw_limit, kept=self.metrics)
        self.warm_baseline = GroupWindow(self.raw_limit, kept=self.metrics)
        self.warm_canary = GroupWindow(self.raw_limit, kept=self.metrics)
        self._group_code = {a: 0 for a in self.baseline_adapters} | {
            a: 1 for a in self.canary_adapters
        }

    @property
    def evidence_from(self) -> float:
        return self.started_at + self.warmup

    def fold(self, cols: Columns, rows: IntArray) -> None:
        """Fold rows (in event-time order) in; rows before the step or to other adapters are
        only counted.

        Positioned rows (partition, offset) fold idempotently when a log is read again (a
        rewind, a consumer restart): per partition, a record at or below the highest offset
        already folded is skipped, unless it is newer than that record, which means the
        partition's log was recreated (offsets started over) rather than re-read.
        """
        keep = np.ones(rows.size, dtype=bool)
        ts = cols.timestamp[rows]
        if cols.positioned:
            names = cols.labels.names()
            parts, offsets = cols.partition[rows], cols.offset[rows]
            for code in np.flatnonzero(np.bincount(parts)):
                part = names[code]
                mine = np.flatnonzero(parts == code)
                seen = self.watermarks.get(part)
                if seen is not None:
                    dup = (offsets[mine] <= seen[0]) & (ts[mine] <= seen[1])
                    keep[mine[dup]] = False
                    self.duplicates += int(dup.sum())
                fresh = mine[keep[mine]]
                if fresh.size:
                    last = fresh[np.argmax(offsets[fresh])]
                    self.watermarks[part] = (int(offsets[last]), float(ts[last]))
        early = keep & (ts < self.started_at)
        self.before_step += int(early.sum())
        keep &= ~early
        groups = cols.labels.lookup(lambda name: self._group_code.get(name or "", 2), np.int8)[
            cols.target[rows]
        ]
        unrouted = rows[keep & (groups == 2)]
        if unrouted.size:
            self.unrouted.update(_named(cols, cols.target[unrouted]))
        folded = ts[keep & (groups < 2)]
        if folded.size:
            latest = float(folded.max())
            if self.last_event_at is None or latest > self.last_event_at:
                self.last_event_at = latest
        settled = keep & (ts >= self.started_at + SETTLE)
        if settled.any():
            self.settled[0] += int(np.count_nonzero(settled & (groups == 0)))
            self.settled[1] += int(np.count_nonzero(settled & (groups == 1)))
        warm = ts < self.evidence_from
        if warm.any():
            self.warm_canary.fold(cols, rows[keep & (groups == 1) & warm])
            self.warm_baseline.fold(cols, rows[keep & (groups == 0) & warm])
            keep &= ~warm
        self.canary.fold(cols, rows[keep & (groups == 1)])
        self.baseline.fold(cols, rows[keep & (groups == 0)])

    def unattributed_share(self) -> float:
        """Share of the step's lines of the rule's model that no group claims (no adapter
        named, or an adapter in neither group)."""
        lost = sum(self.unrouted.values())
        seen = lost + sum(
            g.requests for g in (self.baseline, self.canary, self.warm_baseline, self.warm_canary)
        )
        return lost / seen if seen else 0.0

    def rejected_share(self) -> float:
        """Share of the lines read during the step that could not be read at all."""
        lost = sum(self.rejected.values())
        seen = lost + sum(self.unrouted.values())
        seen += sum(
            g.requests for g in (self.baseline, self.canary, self.warm_baseline, self.warm_canary)
        )
        return lost / seen if seen else 0.0

    def warm_view(self) -> StepWindows:
        """The warm-up windows as a step of their own (for the warm-up guard)."""
        view = StepWindows(
            self.baseline_adapters,
            self.canary_adapters,
            self.started_at,
            self.raw_limit,
            self.metrics,
        )
        view.baseline, view.canary = self.warm_baseline, self.warm_canary
        return view

    def merge(self, other: StepWindows) -> None:
        """Add a partial window built elsewhere (another consumer) for the same step."""
        if other.started_at != self.started_at:
            raise ValueError("windows of different steps do not merge")
        self.baseline.merge(other.baseline)
        self.canary.merge(other.canary)
        self.warm_baseline.merge(other.warm_baseline)
        self.warm_canary.merge(other.warm_canary)
        self.before_step += other.before_step
        self.settled = [a + b for a, b in zip(self.settled, other.settled, strict=True)]
        self.unrouted.update(other.unrouted)
        self.rejected.update(other.rejected)


def _named(cols: Columns, codes: npt.NDArray[np.integer[Any]]) -> dict[str, int]:
    """How many times each label occurs among ``codes``."""
    names = cols.labels.names()
    counts = np.bincount(codes, minlength=len(names))
    return {str(names[c]): int(counts[c]) for c in np.flatnonzero(counts)}
