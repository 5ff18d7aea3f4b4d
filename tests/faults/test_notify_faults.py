"""Receivers down, slow or rate limiting, against real HTTP (tests/servers/receiver.py), with
the delivery queue's clock and sleep simulated so that an hour of retries takes no time.

Before: a receiver down 2 minutes got 0 of 6 notifications (5 tries within 3.5 s, then
failed); a receiver slower than the timeout got every notification 5 times, all counted
failed; ``Retry-After: 45`` was cut to 30 s."""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import formatdate

from analyzer.notify.delivery import DeliveryQueue, Transport
from analyzer.notify.slack import SlackWebhookTransport
from analyzer.notify.webhook import IDEMPOTENCY_HEADER, WebhookTransport
from tests.integration.test_notify import SECRET, notification
from tests.servers.receiver import Answer, Receiver


class SimulatedTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def deliver(
    transport: Transport, count: int = 1, **kw: object
) -> tuple[DeliveryQueue, SimulatedTime]:
    t = SimulatedTime()

    async def go() -> DeliveryQueue:
        q = DeliveryQueue(
            "hook",
            transport,
            sleep=t.sleep,
            clock=t.clock,
            rng=random.Random(2),
            **kw,  # type: ignore[arg-type]
        )
        for i in range(count):
            await q.notify(notification("advance", at=1795662050.0 + i))
        await q.aclose(60)
        return q

    return asyncio.run(go()), t


def test_a_receiver_down_for_minutes_gets_every_notification_after() -> None:
    # Down: 503 to the first 30 requests, about five minutes of retries; then it answers.
    with Receiver([Answer(status=503)] * 30, default=Answer(status=200)) as rx:
        q, t = deliver(WebhookTransport(rx.url(), SECRET, timeout=5), count=6)
    assert (q.stats.delivered, q.stats.failed) == (6, 0)
    assert sum(t.slept) >= 120
    assert max(t.slept) <= 60
    delivered = rx.requests[30:]
    assert len({r.headers[IDEMPOTENCY_HEADER] for r in delivered}) == 6 == len(delivered)


def test_retries_end_at_the_deadline_and_count_the_loss() -> None:
    with Receiver(default=Answer(status=503)) as rx:
        q, t = deliver(WebhookTransport(rx.url(), SECRET, timeout=5), retry_for=600)
    assert (q.stats.delivered, q.stats.failed) == (0, 1)
    assert 540 <= sum(t.slept) <= 600  # retried for the whole deadline, not beyond
    assert len(rx.requests) == len(t.slept) + 1


def test_retry_after_is_honoured_in_seconds_and_as_a_date() -> None:
    soon = formatdate(timeval=time.time() + 90, usegmt=True)
    script = [
        Answer(status=429, headers={"Retry-After": "45"}),
        Answer(status=503, headers={"Retry-After": soon}),
        Answer(status=200),
    ]
    with Receiver(script) as rx:
        q, t = deliver(WebhookTransport(rx.url(), SECRET, timeout=5))
    assert q.stats.delivered == 1 and len(rx.requests) == 3
    assert t.slept[0] == 45
    assert 85 <= t.slept[1] <= 91


def test_a_slow_webhook_receiver_gets_each_notification_once_it_is_waited_for() -> None:
    # 0.5 s to answer, 0.2 s timeout: the second retry waits 0.8 s and is answered.
    with Receiver(default=Answer(delay=0.5)) as rx:
        q, _ = deliver(WebhookTransport(rx.url(), SECRET, timeout=0.2))
    assert (q.stats.delivered, q.stats.failed) == (1, 0)
    assert len(rx.requests) == 3  # before: 5, all counted failed
    assert len({r.headers[IDEMPOTENCY_HEADER] for r in rx.requests}) == 1


def test_slack_is_not_posted_twice_when_an_answer_is_late() -> None:
    with Receiver(default=Answer(delay=0.5)) as rx:
        q, _ = deliver(SlackWebhookTransport(rx.url(), timeout=0.2))
    assert len(rx.requests) == 1  # Slack keeps no idempotency key: one message, not five
    assert (q.stats.unconfirmed, q.stats.failed, q.stats.delivered) == (1, 0, 0)
    with Receiver([Answer(status=503), Answer(status=200)]) as rx:
        q, _ = deliver(SlackWebhookTransport(rx.url(), timeout=5))
    assert q.stats.delivered == 1 and len(rx.requests) == 2  # surely not posted: retried
