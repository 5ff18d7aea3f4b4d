"""The HTTP gate: a receiver that must say yes before the rollout advances or promotes.

The daemon POSTs the webhook payload of the decision it is about to make (``type``
``rollout.confirm-step`` or ``rollout.confirm-promotion``), signed like webhooks. A 2xx answer
opens the gate; any other status, a connection error or a timeout keeps it shut and the rollout
holds: a gate that cannot answer never lets a rollout through. Rollbacks are never gated.

Must not: retry in the judging path (the next judgment asks again).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson

from analyzer.gates.base import GateAnswer, GateKind
from analyzer.notify.base import Notification
from analyzer.notify.delivery import DeliveryError
from analyzer.notify.http import post_json
from analyzer.notify.webhook import payload, signed_headers


class HttpGate:
    def __init__(
        self,
        name: str,
        kind: GateKind,
        url: str,
        secret: str | None,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.kind = kind
        self.url = url
        self.secret = secret
        self.clock = clock
        self.client = httpx.AsyncClient(timeout=timeout)

    async def confirm(self, notification: Notification) -> GateAnswer:
        body = orjson.dumps(payload(notification, kind=f"rollout.{self.kind}"))
        headers = signed_headers(self.secret, body, notification.key, self.clock)
        try:
            await post_json(self.client, self.url, body, headers)
        except DeliveryError as exc:
            return GateAnswer(False, f"gate {self.name} ({self.kind}) said no: {exc}")
        return GateAnswer(True, f"gate {self.name} ({self.kind}) approved")

    async def aclose(self) -> None:
        await self.client.aclose()
