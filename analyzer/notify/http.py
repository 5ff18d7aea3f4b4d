"""One JSON POST with the failure taxonomy every HTTP destination shares.

Must not: put a URL or token in an error message (they are secrets here).
"""

from __future__ import annotations

import time

import httpx

from analyzer.notify.delivery import DeliveryError, parse_retry_after

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
"""Failures before the request left: the receiver surely did not get it."""


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float | None = None,
) -> httpx.Response:
    """``timeout``: this attempt's, instead of the client's."""
    try:
        response = await client.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
    except httpx.TransportError as exc:
        # A timeout or a reset after the request was sent may have reached the receiver.
        sent = not isinstance(exc, NOT_SENT)
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        raise DeliveryError(
            f"{what} ({type(exc).__name__})", retryable=True, maybe_delivered=sent
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
    raise DeliveryError(
        f"HTTP {status}",
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after=retry_after,
    )


async def post_json_once(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """``post_json`` for a receiver that keeps no idempotency key (Slack): an attempt that may
    have arrived is never repeated, so a slow answer cannot post a message twice."""
    try:
        return await post_json(client, url, body, headers)
    except DeliveryError as exc:
        if not exc.maybe_delivered:
            raise
        raise DeliveryError(
            f"{exc}: it may have been posted; the receiver does not de-duplicate, so it is "
            "not sent again",
            retryable=False,
            maybe_delivered=True,
        ) from None
