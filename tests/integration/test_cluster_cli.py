"""`canary-analyzer run --kafka --kubeconfig` as a process: a real Kafka-protocol broker, the
API server emulator, leader election, the watch and Events, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.test_kube_router import _object, rule_text
from tests.servers.daemon import start_daemon
from tests.servers.kafkabroker import Broker, create_topic
from tests.servers.kubeapi import KubeApi
from tests.servers.promserver import free_port

pytestmark = pytest.mark.slow
API_VERSION = "inference.networking.x-k8s.io/v1alpha2"


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_cluster_mode_process(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        asyncio.run(create_topic(broker.bootstrap, "logs"))
        with KubeApi() as api:
            api.put(_object("InferenceModel", API_VERSION))
            kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
            rule = tmp_path / "rule.yaml"
            rule.write_text(rule_text("InferenceModel", API_VERSION))
            port = free_port()
            proc = start_daemon(broker.bootstrap, rule, kubeconfig, port)

            def state() -> dict[str, object]:
                obj = api.get(API_VERSION, "InferenceModel", "routed")
                raw = (
                    obj["metadata"]
                    .get("annotations", {})
                    .get("canary-analyzer.io/rollout.lora-request-canary")
                )
                return json.loads(raw) if raw else {}

            try:
                assert _wait(lambda: state().get("phase") == "Progressing"), "never started"
                assert _wait(lambda: api.watches >= 1), "never watched"
                obj = api.get(API_VERSION, "InferenceModel", "routed")
                obj["spec"]["targetModels"][0]["weight"] = 7  # a human edit, mid-step
                api.put(obj)
                assert _wait(lambda: state().get("phase") == "Paused", 10), "no pause"
                base = f"http://127.0.0.1:{port}"
                assert httpx.get(base + "/healthz").status_code == 200
                assert httpx.get(base + "/readyz").json() == {"ready": True, "leader": True}
                metrics = httpx.get(base + "/metrics").text
            finally:
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()[-2000:]
            lease = api.leases[("default", "canary-analyzer")]
            reasons = [e["reason"] for e in api.events]
    finally:
        broker.kill()
    assert lease["spec"]["holderIdentity"]
    assert reasons == ["RolloutStarted", "Paused"]
    assert b"lora-request-canary: Paused" in out
    assert "canary_analyzer_leader 1.0" in metrics
    paused = 'canary_analyzer_decisions_total{action="pause",rule="lora-request-canary"} 1.0'
    assert paused in metrics
