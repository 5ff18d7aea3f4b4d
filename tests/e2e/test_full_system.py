"""The whole product as an SRE runs it: `canary-analyzer run` as a process against a real
Kafka-protocol broker, a real Prometheus, the Kubernetes API emulator and an HTTP receiver for
webhooks, with a simulated gateway that sends live traffic split by the weights on the object."""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from ruamel.yaml import YAML

from analyzer.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.daemon import start_daemon
from tests.kafkabroker import Broker, create_topic
from tests.kubeapi import KubeApi
from tests.promserver import PrometheusServer, free_port
from tests.receiver import Receiver

pytestmark = pytest.mark.slow
API_VERSION = "inference.networking.x-k8s.io/v1alpha2"
BASELINE = ["base-a", "base-b"]
CANARY = ["canary-a"]
SECRET = "e2e-signing-key"


@dataclass
class World:
    broker: Broker
    prom: PrometheusServer
    api: KubeApi
    receiver: Receiver
    tmp: Path
    kubeconfig: Path


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    broker = Broker(tmp_path)
    broker.start()
    prom = PrometheusServer(tmp_path / "prom" if (tmp_path / "prom").mkdir() is None else tmp_path)
    prom.start()
    asyncio.run(create_topic(broker.bootstrap, "logs"))
    with KubeApi() as api, Receiver() as receiver:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        try:
            yield World(broker, prom, api, receiver, tmp_path, kubeconfig)
        finally:
            prom.stop()
            broker.kill()


def _object(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "modelName": model,
            "poolRef": {"name": "pool"},
            "targetModels": [{"name": n, "weight": 50} for n in BASELINE],
        },
    }


DOC = Path(__file__).resolve().parents[2] / "analyzer" / "demo" / "inferencemodel.yaml"
DOC_API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
DOC_BASELINE = [f"sql-lora{s}" for s in ("", "-1", "-2", "-3", "-4")]
DOC_CANARY = [f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4")]


def _doc_object() -> dict[str, Any]:
    """The InferenceModel of the product's source document (v1alpha1, 10 adapters)."""
    obj: dict[str, Any] = YAML(typ="safe").load(DOC.read_text())
    obj["metadata"]["namespace"] = "default"
    return obj


def _rule(
    name: str,
    obj: str,
    model: str,
    min_step: str,
    prom_url: str,
    baseline: list[str] = BASELINE,
    canary: list[str] = CANARY,
    api_version: str = API_VERSION,
) -> str:
    return f"""
apiVersion: canary-analyzer.io/v1alpha1
kind: CanaryRule
metadata: {{name: {name}}}
spec:
  target: {{kind: InferenceModel, apiVersion: {api_version}, namespace: default, name: {obj}}}
  model: {model}
  baseline: {json.dumps(baseline)}
  canary: {json.dumps(canary)}
  steps: [20, 50, 100]
  analysis: {{interval: 1s, minStepDuration: {min_step}, maxStepDuration: 120s, minSamples: 80,
             failureThreshold: 2}}
  prometheus: {{address: "{prom_url}", timeout: 2s}}
  checks:
    - {{name: ttft, metric: ttft, test: mann-whitney, tolerance: 0.1, alpha: 0.01}}
    - {{name: errors, metric: error_rate, test: proportion, tolerance: 0.01, alpha: 0.01}}
    - {{name: kv-cache, source: prometheus, test: threshold, max: 0.99,
       query: "max(max_over_time(vllm:gpu_cache_usage_perc[10y]))"}}
  notify:
    - {{type: webhook, url: {{env: E2E_HOOK_URL}}, secret: {{env: E2E_HOOK_SECRET}}}}
"""


def _daemon(w: World, rules: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        "CANARY_ANALYZER_REPLICA": f"replica-{port}",  # both run on this host: own groups
        "E2E_HOOK_URL": w.receiver.url("/hook"),
        "E2E_HOOK_SECRET": SECRET,
    }
    return start_daemon(w.broker.bootstrap, rules, w.kubeconfig, port, env)


def _get(w: World, name: str) -> dict[str, Any]:
    for api_version in (API_VERSION, DOC_API_VERSION):
        try:
            obj: dict[str, Any] = w.api.get(api_version, "InferenceModel", name)
            return obj
        except KeyError:
            continue
    raise KeyError(name)


def _state(w: World, name: str, rule: str) -> dict[str, Any]:
    obj = _get(w, name)
    raw = obj["metadata"].get("annotations", {}).get(f"canary-analyzer.io/rollout.{rule}")
    return json.loads(raw) if raw else {}


async def _gateway(
    w: World,
    routes: dict[str, tuple[str, float]],
    done: Callable[[], bool],
    seconds: float,
    rps: float = 400.0,
) -> None:
    """Live traffic: per object (model, canary TTFT factor), split by its current weights."""
    rng = random.Random(7)
    producer = AIOKafkaProducer(bootstrap_servers=w.broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not done():
            now = time.time()
            for obj_name, (model, factor) in routes.items():
                targets = _get(w, obj_name)["spec"]["targetModels"]
                names = [t["name"] for t in targets]
                weights = [t.get("weight", 1) for t in targets]
                for _ in range(int(rps * 0.1)):
                    adapter = rng.choices(names, weights)[0]
                    ttft = 0.25 * math.exp(0.5 * rng.gauss(0, 1))
                    ttft *= factor if adapter in CANARY + DOC_CANARY else 1.0
                    ts = now - rng.random() * 0.1
                    line = orjson.dumps(
                        {
                            "start_time": datetime.fromtimestamp(ts, UTC).isoformat(),
                            "model": model,
                            "target_model": adapter,
                            "response_code": 200,
                            "response_duration": ttft * 1000,
                            "duration": (ttft + 2.0) * 1000,
                        }
                    )
                    await producer.send("logs", line, timestamp_ms=int(ts * 1000))
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


def test_healthy_canary_promotes_and_slow_canary_rolls_back(world: World) -> None:
    w = world
    w.api.put(_doc_object())  # healthy: the source document's 10 adapters
    w.api.put(_object("code", "code"))  # slow: a second object and model, same daemon
    rules = w.tmp / "rules"
    rules.mkdir()
    (rules / "chat.yaml").write_text(
        _rule(
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
    (rules / "code.yaml").write_text(_rule("code-v2", "code", "code", "3s", w.prom.url))
    proc = _daemon(w, rules, free_port())
    done = ("Succeeded", "RolledBack")
    try:

        def finished() -> bool:
            return (
                _state(w, "inferencemodel-sample", "chat-v2").get("phase") in done
                and _state(w, "code", "code-v2").get("phase") in done
            )

        routes = {"inferencemodel-sample": ("lora-request", 1.0), "code": ("code", 1.4)}
        asyncio.run(_gateway(w, routes, finished, 90))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    healthy = _state(w, "inferencemodel-sample", "chat-v2")
    slow = _state(w, "code", "code-v2")
    assert healthy["phase"] == "Succeeded", out.decode()[-2000:]
    assert slow["phase"] == "RolledBack", out.decode()[-2000:]
    weights = {
        t["name"]: t["weight"] for t in _get(w, "inferencemodel-sample")["spec"]["targetModels"]
    }
    assert {weights[a] for a in DOC_BASELINE} == {0}  # v1alpha1 keeps 0% targets at 0
    assert {weights[a] for a in DOC_CANARY} == {20}
    code = _get(w, "code")["spec"]["targetModels"]
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
    # From the first conclusive evidence (the first failing judgment) to the rollback PATCH.
    first_fail = min(
        p["decision"]["at"]
        for _, p in payloads
        if p["rule"] == "code-v2" and p["decision"]["action"] in ("hold", "rollback")
    )
    patch_at = max(  # the rollback is the code object's last write
        t for (_, key), t in zip(w.api.writes, w.api.write_times, strict=True) if key[4] == "code"
    )
    delay = patch_at - first_fail
    print(f"\nfirst conclusive evidence -> rollback PATCH: {delay:.2f} s")
    assert delay < 5.0


def test_two_daemons_one_acts_and_a_killed_leader_is_replaced(world: World) -> None:
    w = world
    w.api.put(_object("chat", "chat"))
    rules = w.tmp / "rules"
    rules.mkdir()
    # Long steps: nothing advances while leadership changes hands.
    (rules / "chat.yaml").write_text(_rule("chat-v2", "chat", "chat", "120s", w.prom.url))
    first, second = _daemon(w, rules, free_port()), _daemon(w, rules, free_port())
    procs = {first.pid: first, second.pid: second}
    lease_key = ("default", "canary-analyzer")

    def holder() -> str:
        lease = w.api.leases.get(lease_key)
        return str(lease["spec"]["holderIdentity"]) if lease else ""

    async def scenario() -> tuple[int, int, dict[str, Any], dict[str, Any], int, int]:
        stop = asyncio.Event()
        traffic = asyncio.create_task(_gateway(w, {"chat": ("chat", 1.0)}, stop.is_set, 120))
        try:
            while _state(w, "chat", "chat-v2").get("phase") != "Progressing":
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # both running, one judging
            leader_pid = int(holder().rsplit("-", 1)[1])
            before = _state(w, "chat", "chat-v2")
            writes_before = len(w.api.writes)
            procs[leader_pid].send_signal(signal.SIGKILL)  # mid-step, no goodbye
            procs[leader_pid].wait(10)
            deadline = time.monotonic() + 40
            while holder().endswith(f"-{leader_pid}") and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)  # the new leader adopts and judges
            after = _state(w, "chat", "chat-v2")
            # The killed daemon is started again: it finds a live leader and stands by.
            restarted = _daemon(w, rules, free_port())
            procs[restarted.pid] = restarted
            await asyncio.sleep(4)
            assert _state(w, "chat", "chat-v2") == after
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
