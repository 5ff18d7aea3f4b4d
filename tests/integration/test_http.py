"""The daemon's /healthz, /readyz and /metrics over real HTTP, on a real rollout's objects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from analyzer.config import load_rules
from analyzer.notify.base import NoopNotifier
from analyzer.notify.factory import make_notifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.runtime.http import Observed, make_app, serve
from analyzer.runtime.supervisor import Heartbeats
from tests.conftest import fresh_demo
from tests.servers.promserver import free_port


def test_endpoints_report_a_rollout(tmp_path: Path, simulated_log: Callable[..., Path]) -> None:
    work = fresh_demo(tmp_path)
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()
    # 20 requests naming no adapter, early in the first step: counted, too few to hold it.
    unnamed = re.sub(rb'"target_model":"[^"]*"', b'"target_model":"-"', lines[100])
    lines[100:100] = [
        re.sub(rb'"request_id":"[^"]*"', f'"request_id":"unnamed-{i}"'.encode(), unnamed)
        for i in range(20)
    ]
    lines.append(b"not json")

    async def go() -> tuple[str, int, dict[str, object], int, dict[str, object]]:
        loaded = load_rules([work / "rule.yaml"])[0][0]
        notifier, queues = make_notifier(loaded.rule.spec)
        c = RolloutController(loaded, make_router(loaded), notifier)
        engine = Engine([c])
        for line in lines:
            await engine.feed_lines([line])
        broken: list[str | None] = [None]
        observed = Observed(engine, [c], queues, checks={"kafka": lambda: broken[0]})
        port = free_port()
        runner = await serve(make_app(observed), "127.0.0.1", port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/healthz")).text == "ok\n"
                metrics = (await http.get("/metrics")).text
                ready = await http.get("/readyz")
                broken[0] = "no Kafka partitions assigned yet"
                unready = await http.get("/readyz")
        finally:
            await runner.cleanup()
        return metrics, ready.status_code, ready.json(), unready.status_code, unready.json()

    metrics, ok, body, bad, why = asyncio.run(go())
    assert ok == 200 and body == {"ready": True, "leader": True}
    assert bad == 503 and why["problems"] == {"kafka": "no Kafka partitions assigned yet"}
    expect = [
        f'canary_analyzer_events_total{{outcome="accepted",reason=""}} {len(lines) - 1}.0',
        'canary_analyzer_events_total{outcome="rejected",reason="not_json"} 1.0',
        'canary_analyzer_decisions_total{action="promote",rule="lora-request-canary"} 1.0',
        'canary_analyzer_rollout_phase{phase="Succeeded",rule="lora-request-canary"} 1.0',
        'canary_analyzer_rollout_phase{phase="Progressing",rule="lora-request-canary"} 0.0',
        'canary_analyzer_canary_percent{rule="lora-request-canary"} 100.0',
        'canary_analyzer_weight{adapter="tweet-summary",rule="lora-request-canary"} 20.0',
        'canary_analyzer_unattributed_lines_total{adapter="",rule="lora-request-canary"} 20.0',
        "canary_analyzer_leader 1.0",
        "canary_analyzer_rule_errors 0.0",
    ]
    for line in expect:
        assert line in metrics, line
    assert (
        'canary_analyzer_judgments_total{check="ttft",rule="lora-request-canary",status="pass"}'
        in metrics
    )
    assert "canary_analyzer_check_p_value{" in metrics
    assert 'canary_analyzer_check_alpha{check="ttft",rule="lora-request-canary"} 0.01' in metrics


def test_liveness_fails_on_a_stuck_loop_and_readiness_names_waiting_rules(
    tmp_path: Path,
) -> None:
    """/healthz was always ok; /readyz showed the API's raw error text."""
    work = fresh_demo(tmp_path)
    loaded = load_rules([work / "rule.yaml"])[0][0]
    c = RolloutController(loaded, make_router(loaded), NoopNotifier())
    c.backoff.failed(0.0, "InferenceModel x: API error 503: secret internals")
    now = [0.0]
    beats = Heartbeats(stall=120.0, clock=lambda: now[0])
    beats.beat("kafka-ingest")
    observed = Observed(Engine([c]), [c], stuck=beats.stuck)

    async def go() -> list[tuple[int, str]]:
        port = free_port()
        runner = await serve(make_app(observed), "127.0.0.1", port)
        seen = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for at in (60.0, 200.0):
                    now[0] = at
                    for path in ("/healthz", "/readyz", "/metrics"):
                        r = await http.get(path)
                        seen.append((r.status_code, r.text))
        finally:
            await runner.cleanup()
        return seen

    alive, ready, metrics, dead, *_ = asyncio.run(go())
    assert alive == (200, "ok\n")
    assert ready[0] == 200 and '"degraded": ["lora-request-canary"]' in ready[1]
    assert "secret internals" not in ready[1]
    assert 'canary_analyzer_rollout_degraded{rule="lora-request-canary"} 1.0' in metrics[1]
    assert dead == (503, "stuck: kafka-ingest silent for 200s\n")


@pytest.mark.parametrize("path", ["/nope"])
def test_unknown_paths_are_404(path: str) -> None:
    async def go() -> int:
        port = free_port()
        runner = await serve(make_app(Observed(Engine([]), [])), "127.0.0.1", port)
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}{path}")).status_code
        finally:
            await runner.cleanup()

    assert asyncio.run(go()) == 404
