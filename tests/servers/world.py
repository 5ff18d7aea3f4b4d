"""The whole system around the daemon, for the full-system tests and the latency bench: a real
Kafka-protocol broker, a real Prometheus, the Kubernetes API emulator with its kubeconfig and an
HTTP receiver for webhooks; rule and object texts; the daemon as a process; and a simulated
gateway that sends live traffic split by the weights on the object.

Must not: assert anything (callers do), or know about one test's scenario."""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from ruamel.yaml import YAML

from tests.servers.daemon import start_daemon
from tests.servers.kafkabroker import Broker, create_topic
from tests.servers.kubeapi import KubeApi
from tests.servers.promserver import PrometheusServer
from tests.servers.receiver import Receiver

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


@contextmanager
def open_world(tmp_path: Path) -> Iterator[World]:
    """Every server started, the topic ``logs`` created; all stopped on exit."""
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


def inference_model(name: str, model: str) -> dict[str, Any]:
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


def doc_inference_model() -> dict[str, Any]:
    """The InferenceModel of the product's source document (v1alpha1, 10 adapters)."""
    obj: dict[str, Any] = YAML(typ="safe").load(DOC.read_text())
    obj["metadata"]["namespace"] = "default"
    return obj


def rule_text(
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
             warmup: 1s,
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


def start_world_daemon(w: World, rules: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        "CANARY_ANALYZER_REPLICA": f"replica-{port}",  # both run on this host: own groups
        "E2E_HOOK_URL": w.receiver.url("/hook"),
        "E2E_HOOK_SECRET": SECRET,
    }
    return start_daemon(w.broker.bootstrap, rules, w.kubeconfig, port, env)


def get_object(w: World, name: str) -> dict[str, Any]:
    for api_version in (API_VERSION, DOC_API_VERSION):
        try:
            obj: dict[str, Any] = w.api.get(api_version, "InferenceModel", name)
            return obj
        except KeyError:
            continue
    raise KeyError(name)


def rollout_state(w: World, name: str, rule: str) -> dict[str, Any]:
    obj = get_object(w, name)
    raw = obj["metadata"].get("annotations", {}).get(f"canary-analyzer.io/rollout.{rule}")
    return json.loads(raw) if raw else {}


async def gateway(
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
                targets = get_object(w, obj_name)["spec"]["targetModels"]
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
