"""The daemon process under a failing API server: `canary-analyzer run` against a real
Kafka-protocol broker, a real Prometheus, the API emulator with its fault layer, live traffic.

Before: 40 s of connection resets crashed the ingest task five times and the daemon exited;
one 500 put the rule in error for good. What must hold now: the process keeps running and
alive (/healthz), says which rules wait (/readyz, without the API's error text), and the
rollout resumes and finishes by itself once the API answers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from analyzer.cli import main
from analyzer.notify.webhook import IDEMPOTENCY_HEADER
from tests.conftest import fresh_demo
from tests.servers.kubeapi import Fault
from tests.servers.promserver import free_port
from tests.servers.world import (
    World,
    gateway,
    inference_model,
    rollout_state,
    rule_text,
    start_world_daemon,
)

pytestmark = pytest.mark.slow


def test_resets_and_500s_mid_rollout_are_outlasted(world: World) -> None:
    w = world
    w.api.put(inference_model("chat", "chat"))
    rules = w.tmp / "rules"
    rules.mkdir()
    (rules / "chat.yaml").write_text(rule_text("chat-v2", "chat", "chat", "3s", w.prom.url))
    port = free_port()
    proc = start_world_daemon(w, rules, port)
    seen: dict[str, list[object]] = {"healthz": [], "readyz": []}

    async def probe(http: httpx.AsyncClient) -> None:
        seen["healthz"].append((await http.get("/healthz")).status_code)
        seen["readyz"].append((await http.get("/readyz")).json())

    async def scenario() -> None:
        stop = asyncio.Event()

        def done() -> bool:
            phase = rollout_state(w, "chat", "chat-v2").get("phase")
            return stop.is_set() or phase in ("Succeeded", "RolledBack")

        traffic = asyncio.create_task(gateway(w, {"chat": ("chat", 1.0)}, done, 150))
        try:
            while rollout_state(w, "chat", "chat-v2").get("phase") != "Progressing":
                await asyncio.sleep(0.2)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                while True:  # the endpoints are up once the daemon runs its loops
                    try:
                        await probe(http)
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                with pytest.raises(httpx.ConnectError):  # --http-host 127.0.0.1: not elsewhere
                    await http.get(f"http://127.0.0.2:{port}/healthz")
                # The routed object's next 8 requests fail: 4 connection resets, then 4
                # 500s; the retries back off from 1 s, so this lasts some 10-20 s.
                w.api.inject(
                    Fault("reset", times=4, path="/inferencemodels"),
                    Fault("status", times=4, status=500, path="/inferencemodels"),
                )
                for _ in range(90):
                    if not w.api.faults:
                        break
                    await asyncio.sleep(1)
                    await probe(http)
                assert proc.poll() is None, "the daemon exited under the faults"
            await traffic
        finally:
            stop.set()
            await traffic

    try:
        asyncio.run(scenario())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    kinds = {kind for kind, _, _ in w.api.faulted}
    assert kinds == {"reset", "status"}
    assert set(seen["healthz"]) == {200}
    degraded = [r for r in seen["readyz"] if isinstance(r, dict) and r.get("degraded")]
    assert degraded and all(r["degraded"] == ["chat-v2"] for r in degraded)
    assert all("injected" not in str(r) for r in seen["readyz"])  # no API error text
    state = rollout_state(w, "chat", "chat-v2")
    assert state["phase"] == "Succeeded", out.decode()[-3000:]
    actions = [d["action"] for d in state["history"]]
    assert actions[0] == "start" and actions[-1] == "promote" and "error" not in actions
    assert b"rollout_degraded" in err and b"rollout_error" not in err
    # Every decision announced exactly once (per Idempotency-Key), none left undelivered;
    # the outage was too short (< 5 min) to be announced itself.
    w.receiver.wait_for(len(actions), timeout=30)
    keys = [r.headers[IDEMPOTENCY_HEADER] for r in w.receiver.requests]
    sent = [json.loads(r.body)["decision"]["action"] for r in w.receiver.requests]
    assert len(keys) == len(set(keys)) and sent == actions


def test_an_unreachable_broker_at_start_is_retried_then_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a traceback. Now: retried for CONNECT_TIMEOUT, then one line and exit 2."""
    work = fresh_demo(tmp_path)
    monkeypatch.setenv("CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CANARY_ANALYZER_KAFKA_TOPICS", "logs")
    monkeypatch.setenv("CANARY_ANALYZER_KAFKA_CONNECT_TIMEOUT", "1.5")
    argv = ["run", "--kafka", "--rules", str(work / "rule.yaml"), "--http-port", "0"]
    assert main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert "kafka: cannot reach 127.0.0.1:" in out.err
    assert "after 1.5 s; check CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS" in out.err
    assert out.err.count("kafka_unreachable") >= 1  # retried before giving up


def test_sigterm_during_an_api_hang_exits(world: World) -> None:
    """Every API request hangs for 5 minutes when SIGTERM comes: before, the exit waited for
    them (no client timeout); now every wait is bounded and the daemon exits by itself."""
    w = world
    w.api.put(inference_model("chat", "chat"))
    rules = w.tmp / "rules"
    rules.mkdir()
    (rules / "chat.yaml").write_text(rule_text("chat-v2", "chat", "chat", "120s", w.prom.url))
    proc = start_world_daemon(w, rules, free_port())

    async def until_started() -> None:
        stop = asyncio.Event()
        traffic = asyncio.create_task(gateway(w, {"chat": ("chat", 1.0)}, stop.is_set, 60))
        try:
            while rollout_state(w, "chat", "chat-v2").get("phase") != "Progressing":
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
        finally:
            stop.set()
            await traffic

    try:
        asyncio.run(until_started())
        w.api.inject(Fault("hang", times=10**6, seconds=300, path="/"))
        time.sleep(2)  # judgments and lease renewals are now hanging
        proc.send_signal(signal.SIGTERM)
        # Not a speed bound: only that it ends at all, long before the hangs would.
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"Traceback" not in err
    assert w.api.faulted  # the hang was in the way
    assert b"chat-v2:" in out  # the summary was printed
