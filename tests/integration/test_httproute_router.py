"""Pool-level canaries: an HTTPRoute's backendRef weights across two InferencePools, driven
over HTTP with the real kubernetes_asyncio client against the API emulator, which validates
every write against Gateway API's HTTPRoute CRD (schema, defaults and CEL rules). The evidence
is a closed-loop simulation of rules/pool-canary.yaml (the simulated gateway follows the
weights in the route; the pool is read from Istio's cluster name with the rule's pattern)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from ruamel.yaml import YAML

from analyzer.cli import main
from analyzer.config import LoadedRule, parse_rule_text
from analyzer.notify.base import NoopNotifier
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.base import RoutedObject, RouterError
from analyzer.routers.factory import make_router
from analyzer.routers.kube import KubeRouter
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.conftest import ROOT, START
from tests.integration.test_kube_router import _replay
from tests.servers.crd import CRD_DIR
from tests.servers.kubeapi import KubeApi

pytestmark = pytest.mark.slow
RULE = ROOT / "rules" / "pool-canary.yaml"
MANIFEST = ROOT / "rules" / "examples" / "httproute.yaml"
API = "gateway.networking.k8s.io/v1"
BASELINE, CANARY = "vllm-llama3-8b-a100", "vllm-llama3-8b-h200"


@pytest.fixture(scope="module")
def pool_log(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    cache: dict[str, Path] = {}

    def make(canary_ttft_factor: float) -> Path:
        key = str(canary_ttft_factor)
        if key not in cache:
            work = tmp_path_factory.mktemp("pool")
            shutil.copy(RULE, work / "rule.yaml")
            (work / "examples").mkdir()
            shutil.copy(MANIFEST, work / "examples" / "httproute.yaml")
            log = work / "access.jsonl"
            argv = ["simulate", "--rules", str(work / "rule.yaml"), "--start", START]
            argv += ["--record", str(log), "--linger", "20"]
            argv += ["--canary-ttft-factor", key]
            assert main(argv) == 0
            cache[key] = log
        return cache[key]

    return make


def _route() -> dict[str, Any]:
    return YAML(typ="safe").load(MANIFEST.read_text())  # type: ignore[no-any-return]


def _cluster_rule() -> LoadedRule:
    text = RULE.read_text().replace("    file: examples/httproute.yaml\n", "")
    rules, errors, lines = parse_rule_text(text, "rule.yaml")
    assert errors == [], [str(e) for e in errors]
    return LoadedRule(rules[0], Path("rule.yaml"), lines[0])


def _weights(obj: dict[str, Any]) -> list[dict[str, int]]:
    """Per routed rule (completions, chat): pool -> weight; the health rule is checked as-is."""
    completions, chat, health = obj["spec"]["rules"]
    assert health["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "gateway-health", "port": 8080, "weight": 1}
    ]
    return [{b["name"]: b["weight"] for b in r["backendRefs"]} for r in (completions, chat)]


def test_a_healthy_pool_is_promoted_on_every_rule_that_routes_to_it(
    pool_log: Callable[..., Path],
) -> None:
    with KubeApi() as api:
        api.put(_route())
        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.0), chunk=100))
        obj = api.get(API, "HTTPRoute", "llm-route")
    assert [d.action for d in c.decisions] == ["start", "advance", "advance", "promote"]
    assert _weights(obj) == [{BASELINE: 0, CANARY: 100}] * 2
    state = RolloutState.loads(obj["metadata"]["annotations"][annotation_key(c.name)])
    assert state.phase == "Succeeded"
    assert dict(state.applied) == {BASELINE: 0, CANARY: 100}
    assert len(api.writes) == 4  # one merge patch per decision, weights and state together


def test_a_slow_pool_is_rolled_back_to_weight_zero(pool_log: Callable[..., Path]) -> None:
    with KubeApi() as api:
        api.put(_route())
        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.4), chunk=100))
        obj = api.get(API, "HTTPRoute", "llm-route")
    assert c.decisions[-1].action == "rollback"
    assert "ttft" in c.decisions[-1].reason
    # The canary pool had no traffic before the rollout: the route is as it was
    assert _weights(obj) == [{BASELINE: 100}] * 2


def test_a_human_edit_of_one_rule_pauses_the_rollout(pool_log: Callable[..., Path]) -> None:
    with KubeApi() as api:
        api.put(_route())

        def edit(i: int) -> None:
            if i == 3000:  # during the first step
                obj = api.get(API, "HTTPRoute", "llm-route")
                obj["spec"]["rules"][1]["backendRefs"][0]["weight"] = 90
                api.put(obj)

        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.0), between=edit, chunk=100))
        obj = api.get(API, "HTTPRoute", "llm-route")
    assert [d.action for d in c.decisions] == ["start", "pause"]
    reason = c.decisions[-1].reason
    assert "weights changed outside canary-analyzer" in reason
    assert "rule 'chat': vllm-llama3-8b-a100=90, vllm-llama3-8b-h200=5" in reason
    assert obj["spec"]["rules"][1]["backendRefs"][0]["weight"] == 90  # left as set


def test_a_route_whose_rules_disagree_is_refused_at_the_start(
    pool_log: Callable[..., Path],
) -> None:
    with KubeApi() as api:
        route = _route()
        route["spec"]["rules"][1]["backendRefs"][0]["weight"] = 50
        api.put(route)
        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.0), chunk=100))
    assert c.decisions == [] and c.error is not None
    assert "cannot start" in c.error and "rule 'chat'" in c.error
    assert api.writes == []


def test_the_watch_sees_an_edit_of_the_route_at_once(pool_log: Callable[..., Path]) -> None:
    with KubeApi() as api:
        api.put(_route())

        async def go() -> RolloutController:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                loaded = _cluster_rule()
                router = make_router(loaded, api=ac)
                c = RolloutController(loaded, router, NoopNotifier())
                engine = Engine([c])
                await engine.start(float(START))
                stop = asyncio.Event()

                async def changed(obj: RoutedObject) -> None:
                    await c.on_object_change(obj, engine.now or 0.0)

                assert isinstance(router, KubeRouter)
                task = asyncio.create_task(router.watch(changed, stop, timeout_seconds=30))
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if api.watches >= 1:
                        break
                edited = api.get(API, "HTTPRoute", "llm-route")
                for rule in edited["spec"]["rules"][:2]:
                    rule["backendRefs"][0]["weight"] = 50  # both rules, consistently
                api.put(edited)
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if c.state is not None and c.state.phase == "Paused":
                        break
                stop.set()
                api.put(api.get(API, "HTTPRoute", "llm-route"))
                await asyncio.wait_for(task, 10)
                return c

        c = asyncio.run(go())
    assert c.state is not None and c.state.phase == "Paused"
    assert "changed outside canary-analyzer" in c.decisions[-1].reason


def test_a_cluster_without_gateway_api_is_named(tmp_path: Path) -> None:
    only = tmp_path / "crds"
    only.mkdir()
    shutil.copy(CRD_DIR / "inferencepools.v1.gie-v1.6.0.yaml", only)

    async def go() -> str:
        with KubeApi(only) as api:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                router = make_router(_cluster_rule(), api=ac)
                with pytest.raises(RouterError) as exc:
                    await router.check_served()
                return str(exc.value)

    assert "gateway.networking.k8s.io is not installed" in asyncio.run(go())


def test_status_lists_pool_rollouts_from_the_route(
    tmp_path: Path, pool_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with KubeApi() as api:
        api.put(_route())
        asyncio.run(_replay(api, _cluster_rule(), pool_log(1.4), chunk=100))
        kubeconfig = api.write_kubeconfig(tmp_path / "config")
        capsys.readouterr()
        assert main(["status", "--kubeconfig", str(kubeconfig), "-o", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
    assert [(r["rule"], r["phase"], r["object"]) for r in listed] == [
        ("llama-h200-pool", "RolledBack", f"HTTPRoute default/llm-route ({API})")
    ]


def _status(generation: int, ok: bool) -> dict[str, Any]:
    """What a gateway controller writes: Accepted, and ResolvedRefs (False: a pool missing)."""
    resolved = {
        "type": "ResolvedRefs",
        "status": "True" if ok else "False",
        "reason": "ResolvedRefs" if ok else "BackendNotFound",
        "message": "" if ok else f"InferencePool default/{CANARY} not found",
        "observedGeneration": generation,
        "lastTransitionTime": "2026-11-26T03:00:00Z",
    }
    accepted = {**resolved, "type": "Accepted", "status": "True", "reason": "Accepted"}
    accepted["message"] = ""
    return {
        "parents": [
            {
                "parentRef": {"name": "inference-gateway"},
                "controllerName": "istio.io/gateway-controller",
                "conditions": [accepted, resolved],
            }
        ]
    }


def test_a_gateway_that_refuses_the_weights_written_pauses_the_rollout(
    pool_log: Callable[..., Path],
) -> None:
    with KubeApi() as api:
        api.put(_route())

        def gateway(i: int) -> None:
            obj = api.get(API, "HTTPRoute", "llm-route")
            generation = obj["metadata"]["generation"]
            if i == 0:
                obj["status"] = _status(generation, ok=True)
            elif i == 2000:  # after the first write: the canary pool does not exist
                obj["status"] = _status(generation, ok=False)
            else:
                return
            api.put(obj)  # the status only: the generation stays

        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.0), between=gateway, chunk=100))
        obj = api.get(API, "HTTPRoute", "llm-route")
    assert [d.action for d in c.decisions] == ["start", "pause"]
    reason = c.decisions[-1].reason
    assert "weights written, not taken" in reason
    assert "ResolvedRefs=False (BackendNotFound)" in reason and f"{CANARY} not found" in reason
    assert obj["metadata"]["generation"] == 2  # created, then the start's weights


def test_a_route_its_gateway_does_not_accept_is_refused_at_the_start(
    pool_log: Callable[..., Path],
) -> None:
    with KubeApi() as api:
        route = _route()
        route["status"] = _status(1, ok=False)
        api.put(route)
        c = asyncio.run(_replay(api, _cluster_rule(), pool_log(1.0), chunk=100))
    assert c.decisions == [] and c.error is not None
    assert "cannot start" in c.error and "BackendNotFound" in c.error
    assert api.writes == []
