"""Notifications and gates against a real HTTP receiver (aiohttp on loopback)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.config import load_rules, parse_rule_text
from analyzer.notify.base import Notification
from analyzer.notify.delivery import DeliveryQueue
from analyzer.notify.factory import make_notifier
from analyzer.notify.slack import SlackBotTransport, SlackWebhookTransport, render
from analyzer.notify.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookTransport,
    verify,
)
from analyzer.rollout.state import Decision
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.blockkit import errors as blockkit_errors
from tests.conftest import fresh_demo, replay
from tests.servers.receiver import Answer, Receiver

SECRET = "s3cr3t-signing-key"
CHECKS = (
    {
        "name": "ttft",
        "metric": "ttft",
        "status": "fail",
        "p_value": 2.3e-11,
        "p_adjusted": 4.7e-11,
        "effect": 1.361,
        "effect_kind": "ratio",
        "ci": [1.257, 1.46],
        "n_baseline": 2234,
        "n_canary": 261,
        "method": "binned",
        "dry_run": False,
    },
    {
        "name": "errors",
        "metric": "error_rate",
        "status": "pass",
        "p_value": 0.88,
        "p_adjusted": 0.88,
        "effect": 0.002,
        "effect_kind": "difference",
        "ci": [-0.0028, 0.0254],
        "n_baseline": 2238,
        "n_canary": 262,
        "method": "score",
        "dry_run": False,
    },
)


def notification(action: str = "rollback", at: float = 1795662050.0) -> Notification:
    return Notification(
        rule="lora-request-canary",
        revision="6fa788e5a7059fdb",
        object="InferenceModel default/inferencemodel-sample",
        model="lora-request",
        steps=(10, 25, 50, 100),
        phase="RolledBack" if action == "rollback" else "Progressing",
        decision=Decision(
            at,
            action,
            "2 consecutive failing judgments at 10% canary: ttft ...",  # type: ignore[arg-type]
            0,
            0 if action == "rollback" else 10,
            CHECKS,
        ),
        weights_before=(("tweet-summary", 2), ("sql-lora", 18)),
        weights_after=(("tweet-summary", 10), ("sql-lora", 10)),
    )


def no_sleep_queue(name: str, transport, **kw) -> DeliveryQueue:  # type: ignore[no-untyped-def]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    q = DeliveryQueue(name, transport, sleep=sleep, rng=random.Random(1), **kw)
    q.slept = slept  # type: ignore[attr-defined]
    return q


def test_slack_webhook_rollback_message_is_valid_block_kit() -> None:
    with Receiver() as rx:

        async def go() -> None:
            t = SlackWebhookTransport(rx.url("/services/T/B/X"), timeout=5)
            await t.send(notification())
            await t.aclose()

        asyncio.run(go())
    msg = json.loads(rx.requests[0].body)
    assert blockkit_errors(msg) == []
    assert msg["blocks"][0]["text"]["text"].startswith(":rotating_light: ROLLED BACK")
    text = json.dumps(msg, ensure_ascii=False)
    for needle in (
        "ttft",
        "2234/261",
        "1.361x",
        "[1.257, 1.460]",
        "FAIL",
        "sql-lora",
        "18 -> 10",
        "1/4 · back to 0% canary",
    ):
        assert needle in text, needle
    # Every kind of decision renders within the limits, even with absurd inputs.
    long = Notification(**{**notification().__dict__, "rule": "r" * 300})
    for action in ("start", "advance", "promote", "hold", "pause", "resume", "rollback", "error"):
        n = Notification(
            **{**long.__dict__, "decision": Decision(1.0, action, "x" * 5000, 0, 10, CHECKS * 40)}
        )  # type: ignore[arg-type]
        assert blockkit_errors(render(n)) == [], action


def test_slack_bot_threads_per_rollout_and_broadcasts_rollbacks() -> None:
    answers = [
        Answer(json={"ok": True, "ts": "1700000000.000100", "channel": "C1"}),
        Answer(json={"ok": True, "ts": "1700000000.000200", "channel": "C1"}),
        Answer(json={"ok": False, "error": "channel_not_found"}),
    ]
    with Receiver(answers) as rx:

        async def go() -> DeliveryQueue:
            q = no_sleep_queue(
                "slack", SlackBotTransport("xoxb-token", "#rollouts", rx.url("/api"), timeout=5)
            )
            await q.notify(notification("start", 1.0))
            await q.notify(notification("rollback", 2.0))
            await q.notify(notification("hold", 3.0))
            await q.aclose(5)
            return q

        q = asyncio.run(go())
    first, second, third = (json.loads(r.body) for r in rx.requests)
    assert rx.requests[0].path == "/api/chat.postMessage"
    assert rx.requests[0].headers["Authorization"] == "Bearer xoxb-token"
    assert first["channel"] == "#rollouts" and "thread_ts" not in first
    assert second["thread_ts"] == "1700000000.000100" and second["reply_broadcast"] is True
    assert "reply_broadcast" not in third
    assert blockkit_errors(first) == [] and blockkit_errors(second) == []
    assert (q.stats.delivered, q.stats.failed) == (2, 1)  # channel_not_found is not retried


def test_webhook_signature_schema_and_idempotency() -> None:
    with Receiver() as rx:

        async def go() -> None:
            t = WebhookTransport(rx.url(), SECRET, timeout=5, clock=lambda: 1795662051.0)
            await t.send(notification())
            await t.aclose()

        asyncio.run(go())
    req = rx.requests[0]
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    assert ts == "1795662051" and sig.startswith("v1=")
    sent = 1795662051.0
    assert verify(SECRET, ts, req.body, sig, now=sent + 299)
    assert not verify("another-secret", ts, req.body, sig, now=sent)
    assert not verify(SECRET, "1795662052", req.body, sig, now=sent)
    # A signed request replayed later than the tolerance (300 s) does not verify.
    assert not verify(SECRET, ts, req.body, sig, now=sent + 301)
    assert verify(SECRET, ts, req.body, sig, now=sent + 3600, tolerance=7200)
    assert not verify(SECRET, "not-a-time", req.body, sig, now=sent)
    body = json.loads(req.body)
    assert body["schemaVersion"] == "1" and body["type"] == "rollout.decision"
    assert body["id"] == req.headers[IDEMPOTENCY_HEADER] == notification().key
    assert body["decision"]["action"] == "rollback" and body["severity"] == "error"
    assert body["weights"] == {
        "before": {"tweet-summary": 2, "sql-lora": 18},
        "after": {"tweet-summary": 10, "sql-lora": 10},
    }
    assert body["decision"]["checks"][0]["ci"] == [1.257, 1.46]


def test_retries_on_500_and_429_honour_retry_after_and_keep_the_key() -> None:
    script = [
        Answer(status=500),
        Answer(status=429, headers={"Retry-After": "0.25"}),
        Answer(status=200),
    ]
    with Receiver(script) as rx:

        async def go() -> DeliveryQueue:
            q = no_sleep_queue("hook", WebhookTransport(rx.url(), SECRET, timeout=5))
            await q.notify(notification())
            await q.aclose(5)
            return q

        q = asyncio.run(go())
    assert len(rx.requests) == 3
    assert len({r.headers[IDEMPOTENCY_HEADER] for r in rx.requests}) == 1
    assert len({r.body for r in rx.requests}) == 1  # the receiver can de-duplicate
    assert (q.stats.delivered, q.stats.retries, q.stats.failed) == (1, 2, 0)
    assert q.slept[1] == 0.25  # type: ignore[attr-defined]
    assert 0.5 <= q.slept[0] <= 1.0  # type: ignore[attr-defined]


def test_gives_up_after_the_bound_and_counts_it(capsys: pytest.CaptureFixture[str]) -> None:
    with Receiver(default=Answer(status=503)) as rx:
        url = rx.url("/very-secret-path-token")

        async def go() -> DeliveryQueue:
            q = no_sleep_queue("hook", WebhookTransport(url, SECRET, timeout=5), max_attempts=4)
            await q.notify(notification())
            await q.aclose(5)
            return q

        q = asyncio.run(go())
    assert len(rx.requests) == 4
    assert (q.stats.delivered, q.stats.failed, q.stats.retries) == (0, 1, 3)
    logged = capsys.readouterr()
    assert "notification_failed" in logged.out + logged.err
    assert "very-secret-path-token" not in logged.out + logged.err
    assert SECRET not in logged.out + logged.err


def test_client_errors_are_not_retried_and_timeouts_are() -> None:
    with Receiver([Answer(status=404)]) as rx:

        async def go() -> DeliveryQueue:
            q = no_sleep_queue("hook", WebhookTransport(rx.url(), None, timeout=5))
            await q.notify(notification())
            await q.aclose(5)
            return q

        assert asyncio.run(go()).stats.failed == 1
    assert len(rx.requests) == 1 and SIGNATURE_HEADER not in rx.requests[0].headers
    with Receiver([Answer(delay=1.0), Answer()]) as rx:

        async def slow() -> DeliveryQueue:
            q = no_sleep_queue("hook", WebhookTransport(rx.url(), None, timeout=0.2))
            await q.notify(notification())
            await q.aclose(5)
            return q

        assert asyncio.run(slow()).stats.delivered == 1
    assert len(rx.requests) == 2


def test_severity_filter_and_full_queue() -> None:
    with Receiver() as rx:

        async def go() -> DeliveryQueue:
            q = no_sleep_queue(
                "hook", WebhookTransport(rx.url(), None, timeout=5), severity="error", queue_size=1
            )
            await q.notify(notification("start"))
            await q.notify(notification("hold"))
            await q.notify(notification("rollback", 1.0))
            await q.notify(notification("rollback", 2.0))  # queue of one is full: dropped
            await q.aclose(5)
            return q

        q = asyncio.run(go())
    assert [json.loads(r.body)["decision"]["action"] for r in rx.requests] == ["rollback"]
    assert (q.stats.filtered, q.stats.dropped, q.stats.delivered) == (2, 1, 1)


def _rule_with(work: Path, extra: str) -> Path:
    rule = work / "rule.yaml"
    rule.write_text(rule.read_text() + extra)
    return rule


NOTIFY = """\
  notify:
    - type: webhook
      name: ops-hook
      url: {env: CA_TEST_HOOK_URL}
      secret: {env: CA_TEST_HOOK_SECRET}
"""


@pytest.mark.slow
def test_a_slow_receiver_never_delays_a_rollback(
    tmp_path: Path, simulated_log: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = simulated_log(canary_ttft_factor=1.4)
    release = threading.Event()  # the receiver answers nothing until the replay is over
    with Receiver(hold=release) as rx:
        monkeypatch.setenv("CA_TEST_HOOK_URL", rx.url())
        monkeypatch.setenv("CA_TEST_HOOK_SECRET", SECRET)
        rule = _rule_with(fresh_demo(tmp_path), NOTIFY)

        async def go() -> tuple[int, int, str]:
            loaded = load_rules([rule])[0][0]
            notifier, queues = make_notifier(loaded.rule.spec)
            c = RolloutController(loaded, make_router(loaded), notifier)
            engine = Engine([c])
            for line in log.read_bytes().splitlines():
                await engine.feed_lines([line])
            await engine.finish()
            # Inline delivery would have waited for each answer before deciding on.
            delivered_then = queues[0].stats.delivered
            phase = c.state.phase if c.state else ""
            release.set()
            await engine.close(timeout=20)
            return delivered_then, queues[0].stats.delivered, phase

        delivered_then, delivered_after, phase = asyncio.run(go())
        rx.wait_for(3)
    assert phase == "RolledBack"
    assert delivered_then == 0 and delivered_after == 3
    assert [json.loads(r.body)["decision"]["action"] for r in rx.requests] == [
        "start",
        "hold",
        "rollback",
    ]


GATES = """\
  gates:
    - name: change-freeze
      type: confirm-step
      url: {env: CA_TEST_GATE_URL}
      timeout: 0.3s
    - name: release-manager
      type: confirm-promotion
      url: {env: CA_TEST_GATE_URL}
      secret: {env: CA_TEST_HOOK_SECRET}
"""


@pytest.mark.slow
@pytest.mark.parametrize("answer", [Answer(status=403), Answer(delay=1.0)])
def test_gate_holds_on_refusal_and_on_timeout(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: Answer,
) -> None:
    log = simulated_log(canary_ttft_factor=1.0)
    with Receiver(default=answer) as rx:
        monkeypatch.setenv("CA_TEST_GATE_URL", rx.url("/gate"))
        monkeypatch.setenv("CA_TEST_HOOK_SECRET", SECRET)
        rule = _rule_with(fresh_demo(tmp_path), GATES)
        doc = replay(rule, log, capsys=capsys)
    r = doc["rollouts"][0]
    assert r["phase"] == "Progressing" and r["step"] == 0
    actions = [d["action"] for d in r["decisions"]]
    assert actions == ["start", "hold"]  # said once, though asked at every judgment
    assert "change-freeze" in r["decisions"][1]["reason"]
    assert len(rx.requests) > 3
    assert {json.loads(q.body)["type"] for q in rx.requests} == {"rollout.confirm-step"}


@pytest.mark.slow
def test_open_gates_let_the_rollout_through(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Receiver() as rx:
        monkeypatch.setenv("CA_TEST_GATE_URL", rx.url("/gate"))
        monkeypatch.setenv("CA_TEST_HOOK_SECRET", SECRET)
        rule = _rule_with(fresh_demo(tmp_path), GATES)
        doc = replay(rule, simulated_log(canary_ttft_factor=1.0), capsys=capsys)
    assert doc["rollouts"][0]["phase"] == "Succeeded"
    kinds = [json.loads(q.body)["type"] for q in rx.requests]
    assert kinds == ["rollout.confirm-step", "rollout.confirm-step", "rollout.confirm-promotion"]
    promotion = rx.requests[-1]
    assert verify(
        SECRET,
        promotion.headers[TIMESTAMP_HEADER],
        promotion.body,
        promotion.headers[SIGNATURE_HEADER],
    )


def test_secrets_never_inline_and_missing_ones_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = fresh_demo(tmp_path)
    text = (work / "rule.yaml").read_text()
    _, errs, _ = parse_rule_text(
        text + "  notify:\n    - type: slack\n      webhookUrl: https://hooks.example/T/B/X\n",
        "r.yaml",
    )
    assert any(
        e.field == "spec.notify[0].webhookUrl" and "never written inline" in e.message for e in errs
    )
    monkeypatch.setenv("CA_TEST_HOOK_SECRET", SECRET)
    monkeypatch.delenv("CA_TEST_HOOK_URL", raising=False)
    rule = _rule_with(work, NOTIFY)
    code = main(["replay", "--rules", str(rule), "--events", str(tmp_path / "none.jsonl")])
    assert code == 2
    assert "environment variable CA_TEST_HOOK_URL is not set" in capsys.readouterr().err
    secret_file = tmp_path / "token"
    secret_file.write_text("xoxb-from-a-file\n")
    _, errs, _ = parse_rule_text(
        text + f"  notify:\n    - {{type: slack, token: {{file: {secret_file}}}, channel: '#x'}}\n",
        "r.yaml",
    )
    assert errs == []


def test_a_typed_reason_cannot_ping_or_link_in_slack() -> None:
    """An override's reason is free text: Slack's control characters arrive as entities."""
    n = notification("pause")
    typed = replace(n, decision=replace(n.decision, reason="<!channel> see <https://x|here> & go"))
    message = render(typed)
    texts = [message["text"]] + [
        b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b
    ]
    assert not any("<!channel>" in t or "<https://" in t for t in texts)
    assert any("&lt;!channel&gt; see &lt;https://x|here&gt; &amp; go" in t for t in texts)
    assert blockkit_errors(message) == []
