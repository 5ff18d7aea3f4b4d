"""Kubernetes Events on the routed object for every decision (``kubectl describe`` shows them).

Reason: the action in CamelCase (RolloutStarted, StepAdvanced, Promoted, Holding, Paused,
Resumed, RolledBack, RolloutError); message: the decision's reason with its numbers; type
Warning for holds, pauses, rollbacks and errors. Sent through a delivery queue like any other
destination, so the API server's latency never delays a decision.

Must not: touch the routed object itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from analyzer.config import TargetRef
from analyzer.notify.base import Notification
from analyzer.notify.delivery import DeliveryError

REASONS = {
    "start": "RolloutStarted",
    "advance": "StepAdvanced",
    "promote": "Promoted",
    "hold": "Holding",
    "pause": "Paused",
    "resume": "Resumed",
    "rollback": "RolledBack",
    "error": "RolloutError",
    "degraded": "RolloutDegraded",
    "recovered": "RolloutRecovered",
}
MESSAGE_MAX = 1024


class KubeEventTransport:
    def __init__(self, api: client.ApiClient, target: TargetRef) -> None:
        self.core = client.CoreV1Api(api)
        self.target = target

    async def send(self, notification: Notification) -> None:
        d = notification.decision
        when = datetime.fromtimestamp(d.at, UTC)
        t = self.target
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{t.name}.", namespace=t.namespace),
            involved_object=client.V1ObjectReference(
                api_version=t.api_version, kind=t.kind, name=t.name, namespace=t.namespace
            ),
            reason=REASONS.get(d.action, "RolloutDecision"),
            message=f"{notification.rule}: {d.reason}"[:MESSAGE_MAX],
            type="Normal" if notification.severity == "info" else "Warning",
            source=client.V1EventSource(component="canary-analyzer"),
            first_timestamp=when,
            last_timestamp=when,
            count=1,
        )
        try:
            await self.core.create_namespaced_event(t.namespace, event)
        except ApiException as exc:
            raise DeliveryError(
                f"event refused: HTTP {exc.status}",
                retryable=exc.status in (429, 500, 502, 503, 504),
            ) from None

    async def aclose(self) -> None:
        return None
