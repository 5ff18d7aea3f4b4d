"""Delivery: a bounded queue per destination, retries with backoff, and counters.

``notify`` only enqueues, so a slow or dead receiver never delays a decision, a rollback least
of all. A worker task sends one notification at a time: on a retryable failure (5xx, 429,
timeout, connection error) it waits ``d/2 + U(0, d/2)`` with ``d = min(max_backoff, base *
2**attempt)``, or exactly the receiver's ``Retry-After`` (seconds or an HTTP date) when given,
and tries again for up to ``retry_for`` seconds (an hour by default: a receiver down for minutes
still gets every notification) and ``max_attempts`` tries when set; then it gives up, counts and
logs it. An attempt that may have reached the receiver (a timeout after the request was sent)
and whose transport cannot be de-duplicated is not retried but counted ``unconfirmed``. A full
queue drops the newest notification and counts it. Notifications below the destination's
severity are not queued at all.

Must not: let an exception escape the worker (it would stop all later deliveries); log a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import structlog

from analyzer.config import Severity
from analyzer.notify.base import SEVERITY_RANK, Notification

log = structlog.get_logger("analyzer.notify")


class DeliveryError(Exception):
    """One attempt failed. ``retryable`` says whether another attempt may succeed;
    ``maybe_delivered`` that the receiver may have got it anyway (the answer was lost)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class Transport(Protocol):
    async def send(self, notification: Notification) -> None:
        """One attempt; raise DeliveryError on failure."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class DeliveryStats:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    filtered: int = 0
    unconfirmed: int = 0
    """Given up after an attempt that may have arrived (not retried: no de-duplication)."""


RETRY_FOR = 3600.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110
    10.2.3) against ``now``, the wall clock; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


class DeliveryQueue:
    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        severity: Severity = "info",
        max_attempts: int | None = None,
        retry_for: float = RETRY_FOR,
        base_backoff: float = 1.0,
        max_backoff: float = 60.0,
        queue_size: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.transport = transport
        self.min_rank = SEVERITY_RANK[severity]
        self.max_attempts = max_attempts
        self.retry_for = retry_for
        self._clock = clock
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(queue_size)
        self.stats = DeliveryStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._worker: asyncio.Task[None] | None = None
        self._unsettled: Counter[str] = Counter()

    async def notify(self, notification: Notification) -> None:
        if SEVERITY_RANK[notification.severity] < self.min_rank:
            self.stats.filtered += 1
            return
        try:
            self.queue.put_nowait(notification)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning(
                "notification_dropped",
                destination=self.name,
                reason="queue full",
                rule=notification.rule,
                action=notification.decision.action,
            )
            return
        self.stats.queued += 1
        self._unsettled[notification.key] += 1
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"notify-{self.name}")

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry ``attempt + 1``: the receiver's own when it gave one."""
        if retry_after is not None:
            return retry_after
        d = min(self.max_backoff, self.base_backoff * 2.0 ** min(attempt, 62))
        return d / 2 + self._rng.uniform(0, d / 2)

    async def _run(self) -> None:
        while True:
            notification = await self.queue.get()
            try:
                await self._deliver(notification)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a transport must not stop later deliveries
                self.stats.failed += 1
                log.error("notification_crashed", destination=self.name, error=repr(exc))
            finally:
                self._unsettled[notification.key] -= 1
                if self._unsettled[notification.key] <= 0:
                    del self._unsettled[notification.key]
                self.queue.task_done()

    async def _deliver(self, notification: Notification) -> None:
        started = self._clock()
        attempt = 0
        while True:
            try:
                await self.transport.send(notification)
            except DeliveryError as exc:
                attempt += 1
                delay = self.backoff(attempt - 1, exc.retry_after)
                out_of_tries = self.max_attempts is not None and attempt >= self.max_attempts
                out_of_time = self._clock() - started + delay > self.retry_for
                if not exc.retryable or out_of_tries or out_of_time:
                    unconfirmed = exc.maybe_delivered and not exc.retryable
                    if unconfirmed:
                        self.stats.unconfirmed += 1
                    else:
                        self.stats.failed += 1
                    log.error(
                        "notification_unconfirmed" if unconfirmed else "notification_failed",
                        destination=self.name,
                        rule=notification.rule,
                        action=notification.decision.action,
                        attempts=attempt,
                        error=str(exc),
                    )
                    return
                self.stats.retries += 1
                log.warning(
                    "notification_retry",
                    destination=self.name,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                await self._sleep(delay)
            else:
                self.stats.delivered += 1
                return

    def unsettled(self) -> frozenset[str]:
        return frozenset(self._unsettled)

    async def aclose(self, timeout: float) -> None:
        """Flush what is queued within ``timeout`` seconds, then stop the worker."""
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(self.queue.join(), timeout)
            except TimeoutError:
                log.warning(
                    "notification_flush_timeout", destination=self.name, pending=self.queue.qsize()
                )
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self.transport.aclose()
