"""The Notifier protocol and the notification every decision produces.

Must not: block the caller for long (delivery over the network is queued, see delivery.py);
decide anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from analyzer.config import Severity
from analyzer.rollout.state import Decision
from analyzer.rollout.weights import Target

SEVERITY_RANK: dict[str, int] = {"info": 0, "warn": 1, "error": 2}
_ACTION_SEVERITY: dict[str, Severity] = {
    "start": "info",
    "advance": "info",
    "promote": "info",
    "resume": "info",
    "hold": "warn",
    "pause": "warn",
    "rollback": "error",
    "error": "error",
    "degraded": "warn",
    "recovered": "info",
}


@dataclass(frozen=True)
class Notification:
    rule: str
    revision: str
    object: str
    model: str
    steps: tuple[int, ...]
    phase: str
    decision: Decision
    weights_before: tuple[Target, ...]
    weights_after: tuple[Target, ...]
    dry_run: bool = False

    @property
    def severity(self) -> Severity:
        return _ACTION_SEVERITY.get(self.decision.action, "info")

    @property
    def key(self) -> str:
        """Idempotency key: the same decision always has the same key, retries included."""
        d = self.decision
        raw = f"{self.rule}|{self.revision}|{d.at!r}|{d.action}|{d.step}|{d.canary_percent}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "revision": self.revision,
            "object": self.object,
            "model": self.model,
            "phase": self.phase,
            "severity": self.severity,
            "dry_run": self.dry_run,
            "decision": self.decision.to_json(),
            "weights_before": dict(self.weights_before),
            "weights_after": dict(self.weights_after),
        }


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None:
        """Hand a notification over; must return quickly (queue, don't send inline)."""
        ...

    async def aclose(self, timeout: float) -> None:
        """Deliver what is queued, within ``timeout`` seconds, then stop."""
        ...

    def unsettled(self) -> frozenset[str] | None:
        """Keys of the notifications handed over and not yet settled (sent, or given up);
        None for a notifier that keeps no queue (nothing of it can be lost to a crash)."""
        ...


class NoopNotifier:
    async def notify(self, notification: Notification) -> None:
        return None

    def unsettled(self) -> frozenset[str] | None:
        return None

    async def aclose(self, timeout: float) -> None:
        return None


class FanoutNotifier:
    """Every notification to every destination; each destination queues on its own."""

    def __init__(self, notifiers: list[Notifier]) -> None:
        self.notifiers = notifiers

    async def notify(self, notification: Notification) -> None:
        for n in self.notifiers:
            await n.notify(notification)

    async def aclose(self, timeout: float) -> None:
        for n in self.notifiers:
            await n.aclose(timeout)

    def unsettled(self) -> frozenset[str] | None:
        queued = [u for n in self.notifiers if (u := n.unsettled()) is not None]
        return frozenset().union(*queued) if queued else None
