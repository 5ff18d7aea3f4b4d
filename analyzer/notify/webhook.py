"""Signed JSON webhooks: a stable, versioned payload per decision.

Headers on every POST:
- ``X-Canary-Analyzer-Timestamp``: Unix seconds of this attempt;
- ``X-Canary-Analyzer-Signature``: ``v1=`` + hex HMAC-SHA256(secret, timestamp + "." + body);
- ``Idempotency-Key``: the same for every attempt of the same decision (the body is too), so a
  receiver de-duplicates retries. Receivers should refuse timestamps older than a few minutes.

Must not: change the body between attempts; log the URL or the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from analyzer.notify.base import Notification
from analyzer.notify.http import post_json

SCHEMA_VERSION = "1"
SIGNATURE_HEADER = "X-Canary-Analyzer-Signature"
TIMESTAMP_HEADER = "X-Canary-Analyzer-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def payload(notification: Notification, kind: str = "rollout.decision") -> dict[str, Any]:
    d = notification.decision
    return {
        "schemaVersion": SCHEMA_VERSION,
        "type": kind,
        "id": notification.key,
        "severity": notification.severity,
        "rule": notification.rule,
        "revision": notification.revision,
        "object": notification.object,
        "model": notification.model,
        "phase": notification.phase,
        "dryRun": notification.dry_run,
        "decision": {
            "at": d.at,
            "action": d.action,
            "reason": d.reason,
            "step": d.step,
            "steps": list(notification.steps),
            "canaryPercent": d.canary_percent,
            "checks": list(d.checks),
        },
        "weights": {
            "before": dict(notification.weights_before),
            "after": dict(notification.weights_after),
        },
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


MAX_TIMEOUT = 60.0
VERIFY_TOLERANCE = 300.0
"""Seconds a signed request stays acceptable: older (or as far ahead) is a replay."""


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = VERIFY_TOLERANCE,
) -> bool:
    """Whether ``signature`` signs ``timestamp`` and ``body`` with ``secret``, and the timestamp
    is within ``tolerance`` seconds of ``now`` (the wall clock unless given)."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def signed_headers(
    secret: str | None, body: bytes, key: str, clock: Callable[[], float] = time.time
) -> dict[str, str]:
    headers = {IDEMPOTENCY_HEADER: key}
    if secret is not None:
        ts = str(int(clock()))
        headers[TIMESTAMP_HEADER] = ts
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return headers


class WebhookTransport:
    def __init__(
        self,
        url: str,
        secret: str | None,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.secret = secret
        self.clock = clock
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout)
        self._tries: dict[str, int] = {}

    async def send(self, notification: Notification) -> None:
        """One attempt; each retry of a notification waits twice as long for the answer (up to
        MAX_TIMEOUT), so a receiver slower than ``timeout`` still takes it once, not every
        time (retries carry the same Idempotency-Key)."""
        body = orjson.dumps(payload(notification))
        headers = signed_headers(self.secret, body, notification.key, self.clock)
        tries = self._tries.get(notification.key, 0)
        timeout = max(self.timeout, min(MAX_TIMEOUT, self.timeout * 2.0**tries))
        self._tries[notification.key] = tries + 1
        await post_json(self.client, self.url, body, headers, timeout)
        self._tries.pop(notification.key, None)

    async def aclose(self) -> None:
        await self.client.aclose()
