"""The windows of every step of one rollout: earlier steps (closed, pooled as strata with the
current one) and the current step's, each row folded into the step of its time.

Must not: decide anything, or know where rows come from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from analyzer.analysis.windows import DEFAULT_RAW_LIMIT, METRICS, StepWindows
from analyzer.config import LatencyMetric
from analyzer.events.columns import Columns
from analyzer.stats.histogram import IntArray


@dataclass
class RolloutWindows:
    baseline: frozenset[str]
    canary: frozenset[str]
    raw_limit: int = DEFAULT_RAW_LIMIT
    metrics: tuple[LatencyMetric, ...] = METRICS
    warmup: float = 0.0
    strata: list[StepWindows] = field(default_factory=list)
    """The rollout's earlier steps (closed), pooled with the current one as evidence."""
    current: StepWindows | None = None

    @property
    def all(self) -> list[StepWindows]:
        """Every step's windows, the current one last."""
        return [*self.strata, *([self.current] if self.current is not None else [])]

    def clear(self) -> None:
        self.strata, self.current = [], None

    def reset(self, starts: Sequence[float]) -> None:
        """Windows starting at ``starts`` (the last is the current step), keeping those already
        built (a restart builds them all and the log is read again)."""
        built = {w.started_at: w for w in self.all}
        windows = [built.get(t) or self._new(t) for t in starts]
        for w, end in zip(windows, [*starts[1:], None], strict=True):
            w.ends_at = end
        self.strata, self.current = windows[:-1], windows[-1]

    def _new(self, started_at: float) -> StepWindows:
        return StepWindows(
            self.baseline,
            self.canary,
            started_at,
            raw_limit=self.raw_limit,
            metrics=self.metrics,
            warmup=self.warmup,
        )

    def fold(self, cols: Columns, rows: IntArray) -> None:
        """Each row to the window of its time: an earlier step's, or the current one (which
        also counts what precedes the rollout's evidence)."""
        current = self.current
        if current is None:
            return
        if not self.strata:
            current.fold(cols, rows)
            return
        ts = cols.timestamp[rows]
        earlier = (ts >= self.strata[0].started_at) & (ts < current.started_at)
        for w in self.strata:
            assert w.ends_at is not None
            mine = rows[earlier & (ts >= w.started_at) & (ts < w.ends_at)]
            if mine.size:
                w.fold(cols, mine)
        current.fold(cols, rows[~earlier])

    def unattributed(self) -> Counter[str]:
        """Lines of the rule's model over the rollout's steps that no group claims, by the
        adapter they named ("" for none)."""
        total: Counter[str] = Counter()
        for w in self.all:
            total.update(w.unrouted)
        return total
