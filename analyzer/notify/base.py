"""The Notifier protocol and the notification every decision produces.

Must not: block the caller for long; decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from analyzer.rollout.state import Decision
from analyzer.rollout.weights import Target


@dataclass(frozen=True)
class Notification:
    rule: str
    revision: str
    object: str
    phase: str
    decision: Decision
    weights_before: tuple[Target, ...]
    weights_after: tuple[Target, ...]
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "revision": self.revision,
            "object": self.object,
            "phase": self.phase,
            "dry_run": self.dry_run,
            "decision": self.decision.to_json(),
            "weights_before": dict(self.weights_before),
            "weights_after": dict(self.weights_after),
        }


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None: ...


class NoopNotifier:
    async def notify(self, notification: Notification) -> None:
        return None
