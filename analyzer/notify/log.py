"""Log notifier: every decision as one structured log event with its evidence.

Must not: format with f-strings in event names; event names are constant.
"""

from __future__ import annotations

import structlog

from analyzer.notify.base import Notification

log = structlog.get_logger("analyzer.decisions")

_EVIDENCE = (
    "name",
    "status",
    "p_value",
    "p_within",
    "effect",
    "ci",
    "bound",
    "n_baseline",
    "n_canary",
)


class LogNotifier:
    async def notify(self, notification: Notification) -> None:
        d = notification.decision
        log.info(
            "rollout_decision",
            rule=notification.rule,
            object=notification.object,
            action=d.action,
            phase=notification.phase,
            step=d.step,
            canary_percent=d.canary_percent,
            reason=d.reason,
            weights_before=dict(notification.weights_before),
            weights_after=dict(notification.weights_after),
            dry_run=notification.dry_run,
            checks=[{k: c.get(k) for k in _EVIDENCE} for c in d.checks],
        )

    async def aclose(self, timeout: float) -> None:
        return None

    def unsettled(self) -> frozenset[str] | None:
        return None  # written to the log at once
