"""One JSON POST with the failure taxonomy every HTTP destination shares.

Must not: put a URL or token in an error message (they are secrets here).
"""

from __future__ import annotations

import httpx

from analyzer.notify.delivery import DeliveryError, parse_retry_after

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


async def post_json(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    try:
        response = await client.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
    except httpx.TimeoutException:
        raise DeliveryError("timed out", retryable=True) from None
    except httpx.TransportError as exc:
        raise DeliveryError(f"connection failed ({type(exc).__name__})", retryable=True) from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise DeliveryError(
        f"HTTP {status}",
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after=retry_after,
    )
