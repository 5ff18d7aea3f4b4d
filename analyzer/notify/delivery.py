"""Delivery: a bounded queue per destination, retries with backoff, and counters.

``notify`` only enqueues, so a slow or dead receiver never delays a decision, a rollback least
of all. A worker task sends one notification at a time: on a retryable failure (5xx, 429,
timeout, connection error) it waits ``min(max_backoff, base * 2**attempt)`` with full jitter, or
the receiver's ``Retry-After`` when given, and tries again, at most ``max_attempts`` times; then
it gives up, counts and logs it. A full queue drops the newest notification and counts it.
Notifications below the destination's severity are not queued at all.

Must not: let an exception escape the worker (it would stop all later deliveries); log a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from analyzer.config import Severity
from analyzer.notify.base import SEVERITY_RANK, Notification

log = structlog.get_logger("analyzer.notify")


class DeliveryError(Exception):
    """One attempt failed. ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


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


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class DeliveryQueue:
    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        severity: Severity = "info",
        max_attempts: int = 5,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        queue_size: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.transport = transport
        self.min_rank = SEVERITY_RANK[severity]
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(queue_size)
        self.stats = DeliveryStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._worker: asyncio.Task[None] | None = None

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
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"notify-{self.name}")

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return self._rng.uniform(0, min(self.max_backoff, self.base_backoff * 2**attempt))

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
                self.queue.task_done()

    async def _deliver(self, notification: Notification) -> None:
        for attempt in range(self.max_attempts):
            try:
                await self.transport.send(notification)
            except DeliveryError as exc:
                last_try = attempt + 1 >= self.max_attempts
                if not exc.retryable or last_try:
                    self.stats.failed += 1
                    log.error(
                        "notification_failed",
                        destination=self.name,
                        rule=notification.rule,
                        action=notification.decision.action,
                        attempts=attempt + 1,
                        error=str(exc),
                    )
                    return
                self.stats.retries += 1
                delay = self.backoff(attempt, exc.retry_after)
                log.warning(
                    "notification_retry",
                    destination=self.name,
                    attempt=attempt + 1,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                await self._sleep(delay)
            else:
                self.stats.delivered += 1
                return

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
