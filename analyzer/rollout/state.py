"""Rollout state: what the daemon must remember, serialized as JSON in an object annotation.

The state is the only memory of a rollout (no private database): a restarted daemon, or a new
leader, reads it back from the routed object. It is therefore small (history is bounded) and
versioned (``v``), and it carries the revision of the rule it belongs to, so a finished rollout
is never restarted by a restart, only by a new revision.

Must not: do I/O; it converts to and from plain JSON-able values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from analyzer.config import RuleSpec
from analyzer.rollout.weights import Target

Phase = Literal["Progressing", "Paused", "Succeeded", "RolledBack"]
Action = Literal[
    "start",
    "advance",
    "promote",
    "rollback",
    "pause",
    "resume",
    "hold",
    "error",
    "degraded",
    "recovered",
]
FINISHED: frozenset[str] = frozenset({"Succeeded", "RolledBack"})
STATE_VERSION = 1
HISTORY_LIMIT = 20
ANNOTATION_PREFIX = "canary-analyzer.io/rollout."


def annotation_key(rule_name: str) -> str:
    return ANNOTATION_PREFIX + rule_name


def revision(spec: RuleSpec) -> str:
    """Identity of a rollout: target object, model, groups and steps (not analysis knobs)."""
    t = spec.target
    ident = {
        "target": [t.kind, t.api_version, t.namespace, t.name],
        "model": spec.model,
        "baseline": list(spec.baseline),
        "canary": list(spec.canary),
        "steps": list(spec.steps),
    }
    return hashlib.sha256(orjson.dumps(ident, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    """One thing the rollout decided, with the evidence it decided on."""

    at: float
    action: Action
    reason: str
    step: int
    canary_percent: int
    checks: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "reason": self.reason,
            "step": self.step,
            "canary_percent": self.canary_percent,
            "checks": list(self.checks),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(
            at=float(data["at"]),
            action=data["action"],
            reason=str(data["reason"]),
            step=int(data["step"]),
            canary_percent=int(data["canary_percent"]),
            checks=tuple(data.get("checks", ())),
        )


@dataclass(frozen=True)
class RolloutState:
    rule: str
    revision: str
    phase: Phase
    steps: tuple[int, ...]
    step: int
    """Index into steps."""
    step_started_at: float
    started_at: float
    original: tuple[Target, ...]
    """The object's targets before the rollout: what a rollback restores."""
    applied: tuple[Target, ...] = ()
    """The targets the daemon last wrote; anything else found on the object is a human edit."""
    consecutive_failures: int = 0
    overdue_reported: bool = False
    message: str = ""
    history: tuple[Decision, ...] = field(default_factory=tuple)
    strata_from: tuple[float, ...] = ()
    """Where the rollout's earlier evidence windows start (each ends where the next starts,
    the last where the current step started): a restarted daemon rebuilds them all."""
    notified_until: float = 0.0
    """The time of the last decision in ``history`` whose notifications all settled (sent, or
    given up after their retries): the outbox. The leader that adopts the state sends the
    later ones again, with the same Idempotency-Key."""

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def canary_percent(self) -> int:
        if self.phase == "RolledBack":
            return 0
        return self.steps[self.step]

    @property
    def evidence_since(self) -> float:
        """Where the rollout's pooled evidence starts (a restart reads the log from there)."""
        return self.strata_from[0] if self.strata_from else self.step_started_at

    def with_decision(self, decision: Decision, **changes: Any) -> RolloutState:
        history = (*self.history, decision)[-HISTORY_LIMIT:]
        return replace(self, history=history, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "rule": self.rule,
            "revision": self.revision,
            "phase": self.phase,
            "steps": list(self.steps),
            "step": self.step,
            "stepStartedAt": self.step_started_at,
            "startedAt": self.started_at,
            "original": [list(t) for t in self.original],
            "applied": [list(t) for t in self.applied],
            "consecutiveFailures": self.consecutive_failures,
            "overdueReported": self.overdue_reported,
            "message": self.message,
            "history": [d.to_json() for d in self.history],
            "strataFrom": list(self.strata_from),
            "notifiedUntil": self.notified_until,
        }

    def dumps(self) -> str:
        return orjson.dumps(self.to_json()).decode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported rollout state version {data.get('v')!r}")
        return cls(
            rule=str(data["rule"]),
            revision=str(data["revision"]),
            phase=data["phase"],
            steps=tuple(int(s) for s in data["steps"]),
            step=int(data["step"]),
            step_started_at=float(data["stepStartedAt"]),
            started_at=float(data["startedAt"]),
            original=_targets(data["original"]),
            applied=_targets(data.get("applied", [])),
            consecutive_failures=int(data.get("consecutiveFailures", 0)),
            overdue_reported=bool(data.get("overdueReported", False)),
            message=str(data.get("message", "")),
            history=tuple(Decision.from_json(d) for d in data.get("history", [])),
            strata_from=tuple(float(t) for t in data.get("strataFrom", [])),
            # A state written before the outbox: its decisions count as sent.
            notified_until=float(data.get("notifiedUntil", _last_decision_at(data))),
        )

    @classmethod
    def loads(cls, text: str) -> RolloutState:
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("rollout state must be a JSON object")
        return cls.from_json(data)


def _last_decision_at(data: dict[str, Any]) -> float:
    return max((float(d["at"]) for d in data.get("history", [])), default=0.0)


def _targets(items: Sequence[Sequence[Any]]) -> tuple[Target, ...]:
    return tuple((str(n), None if w is None else int(w)) for n, w in items)
