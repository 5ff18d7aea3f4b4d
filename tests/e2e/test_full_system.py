"""The whole product as an SRE runs it: `canary-analyzer run` as a process against a real
Kafka-protocol broker, a real Prometheus, the Kubernetes API emulator and an HTTP receiver for
webhooks, with a simulated gateway that sends live traffic split by the weights on the object.
How fast a rollback follows its evidence is measured in bench/latency.py, not asserted here."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest

from analyzer.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.servers.promserver import free_port
from tests.servers.world import (
    BASELINE,
    DOC_API_VERSION,
    DOC_BASELINE,
    DOC_CANARY,
    SECRET,
    World,
    doc_inference_model,
    gateway,
    get_object,
    inference_model,
    rollout_state,
    rule_text,
    start_world_daemon,
)

pytestmark = pytest.mark.slow


def test_healthy_canary_promotes_and_slow_canary_rolls_back(world: World) -> None:
    w = world
    w.api.put(doc_inference_model())  # healthy: the source document's 10 adapters
    w.api.put(inference_model("code", "code"))  # slow: a second object and model, same daemon
    rules = w.tmp / "rules"
    rules.mkdir()
    (rules / "chat.yaml").write_text(
        rule_text(
            "chat-v2",
            "inferencemodel-sample",
            "lora-request",
            "3s",
            w.prom.url,
            DOC_BASELINE,
            DOC_CANARY,
            DOC_API_VERSION,
        )
    )
    (rules / "code.yaml").write_text(rule_text("code-v2", "code", "code", "3s", w.prom.url))
    proc = start_world_daemon(w, rules, free_port())
    done = ("Succeeded", "RolledBack")
    try:

        def finished() -> bool:
            return (
                rollout_state(w, "inferencemodel-sample", "chat-v2").get("phase") in done
                and rollout_state(w, "code", "code-v2").get("phase") in done
            )

        routes = {"inferencemodel-sample": ("lora-request", 1.0), "code": ("code", 1.4)}
        asyncio.run(gateway(w, routes, finished, 90))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    healthy = rollout_state(w, "inferencemodel-sample", "chat-v2")
    slow = rollout_state(w, "code", "code-v2")
    assert healthy["phase"] == "Succeeded", out.decode()[-2000:]
    assert slow["phase"] == "RolledBack", out.decode()[-2000:]
    weights = {
        t["name"]: t["weight"]
        for t in get_object(w, "inferencemodel-sample")["spec"]["targetModels"]
    }
    assert {weights[a] for a in DOC_BASELINE} == {0}  # v1alpha1 keeps 0% targets at 0
    assert {weights[a] for a in DOC_CANARY} == {20}
    code = get_object(w, "code")["spec"]["targetModels"]
    assert code == [{"name": n, "weight": 50} for n in BASELINE]  # restored exactly
    w.receiver.wait_for(8, timeout=15)
    payloads = [(r, json.loads(r.body)) for r in w.receiver.requests]
    for r, _ in payloads:
        assert verify(SECRET, r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])
    actions = {
        rule: [p["decision"]["action"] for _, p in payloads if p["rule"] == rule]
        for rule in ("chat-v2", "code-v2")
    }
    assert actions["chat-v2"] == ["start", "advance", "promote"]
    assert actions["code-v2"][0] == "start" and actions["code-v2"][-1] == "rollback"
    rollback = next(p for _, p in payloads if p["decision"]["action"] == "rollback")
    ttft = next(c for c in rollback["decision"]["checks"] if c["name"] == "ttft")
    assert ttft["status"] == "fail" and ttft["effect"] > 1.2


def test_two_daemons_one_acts_and_a_killed_leader_is_replaced(world: World) -> None:
    w = world
    w.api.put(inference_model("chat", "chat"))
    rules = w.tmp / "rules"
    rules.mkdir()
    # Long steps: nothing advances while leadership changes hands.
    (rules / "chat.yaml").write_text(rule_text("chat-v2", "chat", "chat", "120s", w.prom.url))
    first, second = (
        start_world_daemon(w, rules, free_port()),
        start_world_daemon(w, rules, free_port()),
    )
    procs = {first.pid: first, second.pid: second}
    lease_key = ("default", "canary-analyzer")

    def holder() -> str:
        lease = w.api.leases.get(lease_key)
        return str(lease["spec"]["holderIdentity"]) if lease else ""

    async def scenario() -> tuple[int, int, dict[str, Any], dict[str, Any], int, int]:
        stop = asyncio.Event()
        traffic = asyncio.create_task(gateway(w, {"chat": ("chat", 1.0)}, stop.is_set, 120))
        try:
            while rollout_state(w, "chat", "chat-v2").get("phase") != "Progressing":
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # both running, one judging
            leader_pid = int(holder().rsplit("-", 1)[1])
            before = rollout_state(w, "chat", "chat-v2")
            writes_before = len(w.api.writes)
            procs[leader_pid].send_signal(signal.SIGKILL)  # mid-step, no goodbye
            procs[leader_pid].wait(10)
            deadline = time.monotonic() + 40
            while holder().endswith(f"-{leader_pid}") and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)  # the new leader adopts and judges
            after = rollout_state(w, "chat", "chat-v2")
            # The killed daemon is started again: it finds a live leader and stands by.
            restarted = start_world_daemon(w, rules, free_port())
            procs[restarted.pid] = restarted
            await asyncio.sleep(4)
            assert rollout_state(w, "chat", "chat-v2") == after
            return (
                leader_pid,
                writes_before,
                before,
                after,
                len(w.api.writes),
                int(holder().rsplit("-", 1)[1]),
            )
        finally:
            stop.set()
            await traffic

    try:
        killed, writes_before, before, after, writes_after, new_leader = asyncio.run(scenario())
    finally:
        outputs: dict[int, bytes] = {}
        for pid, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            outputs[pid] = p.communicate(timeout=60)[0]
    survivor = procs[new_leader]
    assert new_leader != killed and survivor.returncode == 0
    assert w.api.leases[lease_key]["spec"]["leaseTransitions"] == 1
    # Exactly one acted: one START in all; the survivor adopted the state and wrote nothing.
    assert [d["action"] for d in after["history"]] == ["start"]
    assert after["step"] == before["step"] == 0 and after["applied"] == before["applied"]
    assert writes_after == writes_before == 1
    assert b"START" not in outputs[new_leader]
    assert b"chat-v2: Progressing at 20% canary" in outputs[new_leader]  # it took over
