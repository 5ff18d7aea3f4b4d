"""Receivers down, slow or rate limiting, against real HTTP (tests/servers/receiver.py), with
the delivery queue's clock and sleep simulated so that an hour of retries takes no time.

Before: a receiver down 2 minutes got 0 of 6 notifications (5 tries within 3.5 s, then
failed); a receiver slower than the timeout got every notification 5 times, all counted
failed; ``Retry-After: 45`` was cut to 30 s."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest

from analyzer.config import load_rules
from analyzer.notify.delivery import DeliveryQueue, Transport
from analyzer.notify.factory import make_notifier
from analyzer.notify.slack import SlackWebhookTransport
from analyzer.notify.webhook import IDEMPOTENCY_HEADER, WebhookTransport
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.conftest import START, fresh_demo
from tests.integration.test_notify import NOTIFY, SECRET, _rule_with, notification
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


def test_a_notification_lost_with_its_process_is_sent_by_the_next_leader(
    tmp_path: Path, simulated_log: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox lives in the state annotation (runtime/outbox.py). A daemon killed while its
    START notification was still being retried: the replica that adopts the state sends it
    (same Idempotency-Key); once everything settled, the state says so and a later adopter
    sends nothing again."""
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()
    with Receiver([Answer(status=503)], default=Answer(status=200)) as rx:
        monkeypatch.setenv("CA_TEST_HOOK_URL", rx.url())
        monkeypatch.setenv("CA_TEST_HOOK_SECRET", SECRET)
        rule = _rule_with(fresh_demo(tmp_path), NOTIFY)
        t0 = float(START)

        def controller() -> tuple[RolloutController, list[DeliveryQueue]]:
            loaded = load_rules([rule])[0][0]
            notifier, queues = make_notifier(loaded.rule.spec)
            return RolloutController(loaded, make_router(loaded), notifier), queues

        async def go() -> tuple[list[str], float, float, int]:
            first, queues = controller()
            await Engine([first]).start(t0)  # START written, its webhook answered 503
            while not rx.requests:
                await asyncio.sleep(0.01)
            for q in queues:  # SIGKILL: the retry never happens
                assert q._worker is not None
                q._worker.cancel()
            second, queues = controller()
            engine = Engine([second])
            await engine.start(t0 + 1)  # adopts the state, sends the START again
            for i in range(0, len(lines), 500):
                await engine.feed_lines(lines[i : i + 500])
            await engine.finish()
            for q in queues:
                await asyncio.wait_for(q.queue.join(), 10)
            await engine.advance((engine.now or t0) + 60)  # a finished rollout's last write
            assert second.state is not None
            written = RolloutState.loads(
                (await second.router.read()).annotations[annotation_key(second.name)]
            )
            third, _ = controller()
            before = len(rx.requests)
            await Engine([third]).start((engine.now or t0) + 120)
            await asyncio.sleep(0.2)
            actions = [d.action for d in second.state.history]
            last = second.state.history[-1].at
            return actions, written.notified_until, last, len(rx.requests) - before

        actions, notified_until, last, resent_later = asyncio.run(go())
    keys = [r.headers[IDEMPOTENCY_HEADER] for r in rx.requests]
    sent = [json.loads(r.body)["decision"]["action"] for r in rx.requests]
    assert actions == ["start", "advance", "advance", "promote"]
    assert sent == ["start", "start", "advance", "advance", "promote"]
    assert keys[0] == keys[1] and len(set(keys)) == 4  # the same START, then one of each
    assert notified_until == last  # all settled, recorded in the state
    assert resent_later == 0
