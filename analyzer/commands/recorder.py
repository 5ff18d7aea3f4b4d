"""Every judgment a replay made, kept for the backtest report.

The recorder is one more judgment listener on the daemon's own path: the report draws what the
controllers judged, never a recomputation of it.

Must not: decide, judge or print anything; it copies what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.analysis.judge import Verdict
from analyzer.runtime.controller import JudgmentListener, RolloutController


@dataclass(frozen=True)
class Judgment:
    """One look at one rollout: where it stood and what each check said."""

    at: float
    canary_percent: int
    step_started_at: float
    evidence_from: float
    """The step's warm-up ends here: events before it are counted, not evidence."""
    checks: tuple[dict[str, Any], ...]


@dataclass
class JudgmentRecorder:
    """A judgment listener that keeps each rollout's judgments, by rule name, in order."""

    judgments: dict[str, list[Judgment]] = field(default_factory=dict)

    def __call__(self, c: RolloutController, now: float, verdict: Verdict) -> None:
        s, w = c.state, c.windows
        if s is None or w is None:
            return
        self.judgments.setdefault(c.name, []).append(
            Judgment(
                at=now,
                canary_percent=s.canary_percent,
                step_started_at=s.step_started_at,
                evidence_from=w.evidence_from,
                checks=tuple(r.to_json() for r in verdict.checks),
            )
        )


def fanout(*listeners: JudgmentListener | None) -> JudgmentListener | None:
    """One listener that calls each given one in order; None when none is given."""
    present = [x for x in listeners if x is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call(c: RolloutController, now: float, verdict: Verdict) -> None:
        for listener in present:
            listener(c, now, verdict)

    return call
