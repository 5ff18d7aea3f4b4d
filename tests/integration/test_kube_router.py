"""The Kubernetes router over HTTP, with the real kubernetes_asyncio client, against an API
server emulator that enforces resourceVersion conflicts and validates every write against the
upstream CRDs (tests/servers/kubeapi.py)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from analyzer.cli import main
from analyzer.config import LoadedRule, parse_rule_text
from analyzer.events.lineparser import EventParser
from analyzer.notify.base import NoopNotifier
from analyzer.notify.factory import make_notifier
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.base import RoutedObject, RouterError
from analyzer.routers.factory import make_router
from analyzer.routers.kube import KubeRouter
from analyzer.routers.kubeconfig import api_client
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.runtime.leader import KubeLeaseStore, LeaderElector
from tests.conftest import DEMO, fresh_demo, replay
from tests.servers.crd import CRD_DIR
from tests.servers.kubeapi import KubeApi

pytestmark = pytest.mark.slow
BASELINE = [f"sql-lora{s}" for s in ("", "-1", "-2", "-3", "-4")]
CANARY = [f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4")]
ORIGINAL = [(a, 10) for a in CANARY + BASELINE]


def _object(kind: str, api_version: str) -> dict[str, Any]:
    meta = {"name": "routed", "namespace": "default"}
    if kind == "InferenceModel":
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": meta,
            "spec": {
                "modelName": "lora-request",
                "poolRef": {"name": "pool"},
                "targetModels": [{"name": n, "weight": w} for n, w in ORIGINAL],
            },
        }
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": meta,
        "spec": {
            "poolRef": {"name": "pool"},
            "rules": [
                {
                    "matches": [{"model": {"type": "Exact", "value": "other"}}],
                    "targets": [{"modelRewrite": "other-lora", "weight": 1}],
                },
                {
                    "matches": [{"model": {"type": "Exact", "value": "lora-request"}}],
                    "targets": [{"modelRewrite": n, "weight": w} for n, w in ORIGINAL],
                },
            ],
        },
    }


def rule_text(kind: str, api_version: str) -> str:
    """The demo rule, routing the cluster object ``routed`` instead of a manifest file."""
    text = (DEMO / "rule.yaml").read_text()
    text = text.replace("    file: inferencemodel.yaml\n", "")
    text = text.replace("kind: InferenceModel\n", f"kind: {kind}\n")
    text = text.replace(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1", f"apiVersion: {api_version}"
    )
    return text.replace("name: inferencemodel-sample", "name: routed")


def _rule(kind: str, api_version: str) -> LoadedRule:
    rules, errors, lines = parse_rule_text(rule_text(kind, api_version), "rule.yaml")
    assert errors == [], [str(e) for e in errors]
    return LoadedRule(rules[0], Path("rule.yaml"), lines[0])


async def _replay(
    api: KubeApi,
    loaded: LoadedRule,
    log: Path,
    between: Callable[[int], None] | None = None,
    chunk: int = 1,
) -> RolloutController:
    """``log`` fed ``chunk`` lines at a time; ``between(i)`` before the chunk from line i."""
    cfg = client.Configuration(host=api.url)
    async with client.ApiClient(cfg) as ac:
        router = make_router(loaded, api=ac)
        assert isinstance(router, KubeRouter)
        await router.check_served()
        controller = RolloutController(loaded, router, NoopNotifier())
        engine = Engine([controller])
        lines = log.read_bytes().splitlines()
        for i in range(0, len(lines), chunk):
            if between is not None:
                between(i)
            await engine.feed_lines(lines[i : i + chunk])
        await engine.finish()
    return controller


def _weights(obj: dict[str, Any]) -> dict[str, int]:
    if obj["kind"] == "InferenceModel":
        return {t["name"]: t["weight"] for t in obj["spec"]["targetModels"]}
    rule = obj["spec"]["rules"][1]
    assert obj["spec"]["rules"][0]["targets"] == [{"modelRewrite": "other-lora", "weight": 1}]
    return {t["modelRewrite"]: t["weight"] for t in rule["targets"]}


def _cluster(api_version: str) -> KubeApi:
    """A cluster for ``api_version``: the legacy InferenceModelRewrite group only where llm-d's
    is not installed (with both, the router refuses to drive the ignored one)."""
    legacy_rewrite = api_version == "inference.networking.x-k8s.io/v1alpha2"
    return KubeApi(without=("llm-d",)) if legacy_rewrite else KubeApi()


FLAVOURS = [
    ("InferenceModel", "inference.networking.x-k8s.io/v1alpha1"),
    ("InferenceModel", "inference.networking.x-k8s.io/v1alpha2"),
    ("InferenceModelRewrite", "llm-d.ai/v1alpha2"),
    ("InferenceModelRewrite", "inference.networking.x-k8s.io/v1alpha2"),
]


@pytest.mark.parametrize(("kind", "api_version"), FLAVOURS)
def test_rollout_advances_and_promotes(
    kind: str, api_version: str, simulated_log: Callable[..., Path]
) -> None:
    with _cluster(api_version) as api:
        api.put(_object(kind, api_version))
        c = asyncio.run(
            _replay(api, _rule(kind, api_version), simulated_log(canary_ttft_factor=1.0), chunk=50)
        )
        obj = api.get(api_version, kind, "routed")
    assert [d.action for d in c.decisions] == ["start", "advance", "advance", "promote"]
    weights = _weights(obj)
    if api_version.endswith("v1alpha1"):
        assert {weights[b] for b in BASELINE} == {0}
    else:  # 0 is not a valid weight there: the baseline targets are removed
        assert set(weights) == set(CANARY)
    state = RolloutState.loads(obj["metadata"]["annotations"][annotation_key(c.name)])
    assert state.phase == "Succeeded"
    assert dict(state.applied) == weights  # what the daemon wrote is what the object holds
    assert len(api.writes) == 4  # one PATCH per decision: weights and state together


@pytest.mark.parametrize(("kind", "api_version"), FLAVOURS)
def test_slow_canary_rolls_back_to_no_canary_traffic(
    kind: str, api_version: str, simulated_log: Callable[..., Path]
) -> None:
    # The canary adapters had half the traffic before the rollout: "rolled back" must still
    # mean 0% for them, with the baseline keeping its relative weights.
    with _cluster(api_version) as api:
        api.put(_object(kind, api_version))
        c = asyncio.run(
            _replay(api, _rule(kind, api_version), simulated_log(canary_ttft_factor=1.4), chunk=50)
        )
        obj = api.get(api_version, kind, "routed")
    assert c.decisions[-1].action == "rollback"
    weights = _weights(obj)
    if api_version.endswith("v1alpha1"):
        assert {weights[a] for a in CANARY} == {0}
    else:  # 0 is not a valid weight there: the canary targets are removed
        assert set(weights) == set(BASELINE)
    assert len({weights[b] for b in BASELINE}) == 1 and weights[BASELINE[0]] > 0


def test_a_concurrent_writer_gets_409_and_the_router_rereads(
    simulated_log: Callable[..., Path],
) -> None:
    kind, api_version = FLAVOURS[1]
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        def label(key: tuple[str, str, str, str, str]) -> None:
            obj = copy.deepcopy(api.objects[key])
            obj["metadata"].setdefault("labels", {})["team"] = "sql"
            api.put(obj)  # someone else's write bumps the resourceVersion first

        api.before_write = label
        c = asyncio.run(
            _replay(api, _rule(kind, api_version), simulated_log(canary_ttft_factor=1.0), chunk=50)
        )
        obj = api.get(api_version, kind, "routed")
    assert c.error is None
    assert [d.action for d in c.decisions] == ["start", "advance", "advance", "promote"]
    assert obj["metadata"]["labels"] == {"team": "sql"}  # not overwritten


def test_a_human_edit_of_the_weights_pauses_the_rollout(
    simulated_log: Callable[..., Path],
) -> None:
    kind, api_version = FLAVOURS[1]
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        def edit(i: int) -> None:
            if i == 1500:
                obj = api.get(api_version, kind, "routed")
                obj["spec"]["targetModels"][0]["weight"] = 7
                api.put(obj)

        c = asyncio.run(
            _replay(
                api, _rule(kind, api_version), simulated_log(canary_ttft_factor=1.0), between=edit
            )
        )
        obj = api.get(api_version, kind, "routed")
    assert c.decisions[-1].action == "pause"
    assert "changed outside canary-analyzer" in c.decisions[-1].reason
    assert obj["spec"]["targetModels"][0]["weight"] == 7  # left as the human set it


def test_an_unserved_api_version_is_named(tmp_path: Path) -> None:
    only = tmp_path / "crds"
    only.mkdir()
    shutil.copy(CRD_DIR / "inferencemodels.v1alpha2.gie-v0.5.1.yaml", only)
    loaded = _rule("InferenceModel", "inference.networking.x-k8s.io/v1alpha1")
    rewrite = _rule("InferenceModelRewrite", "llm-d.ai/v1alpha2")

    async def go(rule: LoadedRule) -> str:
        with KubeApi(only) as api:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                router = make_router(rule, api=ac)
                assert isinstance(router, KubeRouter)
                with pytest.raises(RouterError) as exc:
                    await router.check_served()
                return str(exc.value)

    assert "v1alpha1 is not served" in asyncio.run(go(loaded))
    assert "serves: v1alpha2" in asyncio.run(go(loaded))
    assert "llm-d.ai is not installed" in asyncio.run(go(rewrite))


def test_the_rewrite_group_the_endpoint_picker_ignores_is_refused_when_both_are_served() -> None:
    """With both InferenceModelRewrite CRDs installed, llm-d's endpoint picker reads llm-d.ai
    and ignores the legacy objects: driving one of those moved no traffic, silently."""
    legacy = _rule("InferenceModelRewrite", "inference.networking.x-k8s.io/v1alpha2")
    current = _rule("InferenceModelRewrite", "llm-d.ai/v1alpha2")

    async def go(rule: LoadedRule, api: KubeApi) -> str | None:
        async with client.ApiClient(client.Configuration(host=api.url)) as ac:
            router = make_router(rule, api=ac)
            try:
                await router.check_served()
            except RouterError as exc:
                return str(exc)
            return None

    with KubeApi() as both:
        refused = asyncio.run(go(legacy, both))
        assert asyncio.run(go(current, both)) is None
    assert refused is not None
    assert "both inference.networking.x-k8s.io and llm-d.ai/v1alpha2" in refused
    assert "set target.apiVersion: llm-d.ai/v1alpha2" in refused
    with KubeApi(without=("llm-d",)) as legacy_only:
        assert asyncio.run(go(legacy, legacy_only)) is None


def test_an_invalid_write_is_refused_by_the_emulator() -> None:
    """The safety net under the router: a v1alpha2 weight of 0 is a 422, as in a cluster."""
    kind, api_version = FLAVOURS[1]

    async def go() -> str:
        with KubeApi() as api:
            api.put(_object(kind, api_version))
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                router = KubeRouter(ac, _rule(kind, api_version).rule.spec.target, "lora-request")
                obj = await router.read()
                with pytest.raises(RouterError, match="refused") as exc:
                    await router.write(
                        version=obj.version, targets=[("sql-lora", 0)], annotations={}
                    )
                return str(exc.value)

    message = asyncio.run(go())
    assert "targetModels.0.weight" in message and "less than the minimum of 1" in message


def test_a_restarted_daemon_resumes_the_step_with_no_extra_write(
    simulated_log: Callable[..., Path],
) -> None:
    kind, api_version = FLAVOURS[1]
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines()
    head = log.parent / "head-for-kube.jsonl"
    head.write_bytes(b"\n".join(lines[: len(lines) * 45 // 100]) + b"\n")
    with KubeApi() as api:
        api.put(_object(kind, api_version))
        first = asyncio.run(_replay(api, _rule(kind, api_version), head))
        assert first.state is not None and first.state.step == 1
        before = api.get(api_version, kind, "routed")
        writes = len(api.writes)

        async def restart() -> RolloutController:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                loaded = _rule(kind, api_version)
                c = RolloutController(loaded, make_router(loaded, api=ac), NoopNotifier())
                await Engine([c]).start(first.state.step_started_at + 30)  # type: ignore[union-attr]
                return c

        second = asyncio.run(restart())
        after = api.get(api_version, kind, "routed")
    assert second.state == first.state  # same step, same weights, same history
    assert len(api.writes) == writes  # adopting the state writes nothing
    assert after == before


def test_kubeconfig_loading_and_a_clear_error_without_one(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="no Kubernetes configuration works; tried"):
        asyncio.run(api_client(str(tmp_path / "missing")))
    kind, api_version = FLAVOURS[2]
    with KubeApi() as api:
        api.put(_object(kind, api_version))
        kubeconfig = api.write_kubeconfig(tmp_path / "config")

        async def go() -> tuple[tuple[str, int | None], ...]:
            ac = await api_client(str(kubeconfig))
            async with ac:
                router = make_router(_rule(kind, api_version), api=ac)
                assert isinstance(router, KubeRouter)
                await router.check_served()
                return (await router.read()).targets

        assert asyncio.run(go()) == tuple(ORIGINAL)


def test_cli_override_sets_the_command_annotation(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines(keepends=True)
    head, tail = tmp_path / "head.jsonl", tmp_path / "tail.jsonl"
    head.write_bytes(b"".join(lines[: len(lines) // 4]))
    tail.write_bytes(b"".join(lines[len(lines) // 4 :]))
    replay(work / "rule.yaml", head, capsys=capsys)
    assert (
        main(
            [
                "override",
                "pause",
                "--rules",
                str(work / "rule.yaml"),
                "--rule",
                "lora-request-canary",
                "--reason",
                "load test at 14:00",
            ]
        )
        == 0
    )
    doc = replay(work / "rule.yaml", tail, capsys=capsys)["rollouts"][0]
    assert doc["phase"] == "Paused"
    assert doc["decisions"][0]["action"] == "pause"
    assert "load test at 14:00" in doc["decisions"][0]["reason"]
    assert main(["override", "pause", "--rules", str(work / "rule.yaml"), "--rule", "nope"]) == 2


def test_two_replicas_one_writes_and_the_other_takes_over(
    simulated_log: Callable[..., Path],
) -> None:
    kind, api_version = FLAVOURS[1]
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()
    kill_at = len(lines) * 40 // 100
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        async def go() -> tuple[RolloutController, RolloutController, float]:
            clock = [0.0]
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                replicas = []
                for name in ("replica-1", "replica-2"):
                    elector = LeaderElector(
                        KubeLeaseStore(ac, "canary-analyzer", "default"),
                        name,
                        lease_duration=15,
                        renew_deadline=10,
                        retry_period=2,
                        clock=lambda: clock[0],
                    )
                    loaded = _rule(kind, api_version)
                    c = RolloutController(loaded, make_router(loaded, api=ac), NoopNotifier())
                    replicas.append((elector, c, Engine([c], is_leader=elector.is_leader)))
                last_renew = -1e9
                killed_at = 0.0
                probe = EventParser(replicas[0][1].spec.events)
                for i, line in enumerate(lines):
                    event = probe.parse_line(line)
                    assert event is not None
                    clock[0] = event.timestamp
                    alive = replicas if i < kill_at else replicas[1:]
                    if i == kill_at:
                        killed_at = clock[0]
                    if clock[0] - last_renew >= 2:
                        for elector, _, _ in alive:
                            await elector.try_acquire_or_renew()
                        last_renew = clock[0]
                    for _, _, engine in alive:
                        await engine.feed_lines([line])
                await replicas[1][2].finish()
                return replicas[0][1], replicas[1][1], killed_at

        first, second, killed_at = asyncio.run(go())
        obj = api.get(api_version, kind, "routed")
        lease = api.leases[("default", "canary-analyzer")]
    assert first.decisions and first.decisions[0].action == "start"
    assert second.decisions, "the follower never took over"
    assert "start" not in [d.action for d in second.decisions]  # it resumed, not restarted
    assert min(d.at for d in second.decisions) >= killed_at + 15 - 2  # only after the lease ran out
    assert len(api.writes) == len(first.decisions) + len(second.decisions)  # nobody wrote twice
    assert lease["spec"]["holderIdentity"] == "replica-2"
    assert lease["spec"]["leaseTransitions"] == 1
    state = RolloutState.loads(obj["metadata"]["annotations"][annotation_key(second.name)])
    assert state.phase == "Succeeded"


def test_a_leader_cut_off_from_the_api_stops_acting_first() -> None:
    clock = [100.0]

    class DeadStore:
        async def get(self) -> None:
            raise OSError("connection refused")

        async def create(self, record: object) -> object:
            raise OSError

        async def replace(self, record: object) -> object:
            raise OSError

    elector = LeaderElector(
        DeadStore(),
        "me",
        lease_duration=15,
        renew_deadline=10,  # type: ignore[arg-type]
        retry_period=2,
        clock=lambda: clock[0],
    )
    elector._renewed_at = 100.0  # it was leader a moment ago
    assert elector.is_leader()
    clock[0] = 109.0
    assert asyncio.run(elector.try_acquire_or_renew()) is True  # still within the deadline
    clock[0] = 110.5
    assert asyncio.run(elector.try_acquire_or_renew()) is False  # steps down at 10 s < 15 s


def test_every_decision_becomes_an_event_on_the_object(
    simulated_log: Callable[..., Path],
) -> None:
    kind, api_version = FLAVOURS[2]
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        async def go() -> RolloutController:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                loaded = _rule(kind, api_version)
                notifier, _ = make_notifier(loaded.rule.spec, ac)
                c = RolloutController(loaded, make_router(loaded, api=ac), notifier)
                engine = Engine([c])
                for line in simulated_log(canary_ttft_factor=1.4).read_bytes().splitlines():
                    await engine.feed_lines([line])
                await engine.close(timeout=10)
                return c

        c = asyncio.run(go())
        events = list(api.events)
    assert [e["reason"] for e in events] == ["RolloutStarted", "Holding", "RolledBack"]
    assert [d.action for d in c.decisions] == ["start", "hold", "rollback"]
    last = events[-1]
    assert last["type"] == "Warning" and "canary/baseline" in last["message"]
    assert last["involvedObject"] == {
        "apiVersion": api_version,
        "kind": kind,
        "name": "routed",
        "namespace": "default",
    }


def test_watch_pauses_on_a_human_edit_at_once_and_relists_on_410() -> None:
    kind, api_version = FLAVOURS[1]
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        async def go() -> tuple[RolloutController, int, int]:
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                loaded = _rule(kind, api_version)
                router = make_router(loaded, api=ac)
                assert isinstance(router, KubeRouter)
                c = RolloutController(loaded, router, NoopNotifier())
                engine = Engine([c])
                await engine.start(1795662000.0)  # starts the rollout: 10% canary written
                stop = asyncio.Event()
                api.expire_next_watch = True  # the first watch finds its version expired

                async def changed(obj: RoutedObject) -> None:
                    await c.on_object_change(obj, engine.now or 0.0)

                task = asyncio.create_task(router.watch(changed, stop, timeout_seconds=30))
                for _ in range(100):  # until the watch is up after its re-list
                    await asyncio.sleep(0.05)
                    if api.watches >= 2:
                        break
                edited = api.get(api_version, kind, "routed")
                edited["spec"]["targetModels"][0]["weight"] = 3
                api.put(edited)  # a human, between two judgments
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if c.state is not None and c.state.phase == "Paused":
                        break
                stop.set()
                api.put(api.get(api_version, kind, "routed"))  # wakes the stream to see stop
                await asyncio.wait_for(task, 10)
                return c, api.lists, api.watches

        c, lists, watches = asyncio.run(go())
    assert c.state is not None and c.state.phase == "Paused"
    assert "changed outside canary-analyzer" in c.decisions[-1].reason
    assert lists >= 2 and watches >= 2  # 410 Gone -> listed again -> watched again


def test_emulator_json_patch_semantics() -> None:
    """JSON patch (RFC 6902) through the real client: test-op preconditions give 409, list
    element edits apply in place, and the CEL all-or-none weights rule is enforced (422)."""
    kind, api_version = FLAVOURS[1]
    group, version = api_version.split("/")
    with KubeApi() as api:
        api.put(_object(kind, api_version))

        async def go() -> list[int]:
            statuses = []
            async with client.ApiClient(client.Configuration(host=api.url)) as ac:
                custom = client.CustomObjectsApi(ac)
                args = (group, version, "default", "inferencemodels", "routed")
                rv = api.get(api_version, kind, "routed")["metadata"]["resourceVersion"]
                for patch in (
                    [
                        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                        {"op": "replace", "path": "/spec/targetModels/0/weight", "value": 3},
                    ],
                    [
                        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                        {"op": "replace", "path": "/spec/targetModels/0/weight", "value": 3},
                    ],
                    [{"op": "remove", "path": "/spec/targetModels/1/weight"}],
                ):
                    try:
                        await custom.patch_namespaced_custom_object(*args, patch)
                        statuses.append(200)
                    except client.exceptions.ApiException as exc:
                        statuses.append(exc.status)
            return statuses

        statuses = asyncio.run(go())
        obj = api.get(api_version, kind, "routed")
    assert statuses == [409, 200, 422]
    assert obj["spec"]["targetModels"][0]["weight"] == 3
    assert all("weight" in t for t in obj["spec"]["targetModels"])


def test_status_reads_cluster_objects(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    kind, api_version = FLAVOURS[1]
    with KubeApi() as api:
        api.put(_object(kind, api_version))
        asyncio.run(
            _replay(api, _rule(kind, api_version), simulated_log(canary_ttft_factor=1.4), chunk=50)
        )
        kubeconfig = api.write_kubeconfig(tmp_path / "config")
        rule = tmp_path / "rule.yaml"
        rule.write_text(rule_text(kind, api_version))
        capsys.readouterr()
        assert main(["status", "--rules", str(rule), "--kubeconfig", str(kubeconfig)]) == 0
        out = capsys.readouterr().out
        # Without the rule files: every rollout recorded in the namespace, from the objects.
        assert main(["status", "--kubeconfig", str(kubeconfig), "-o", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert main(["status", "--kubeconfig", str(kubeconfig), "-n", "elsewhere"]) == 0
        nothing = capsys.readouterr().out
    assert re.search(r"lora-request-canary\s+RolledBack\s+1/4\s+0%", out)
    assert "last: rollback" in out and "ttft x" in out  # the evidence of the last decision
    assert [(r["rule"], r["phase"], r["object"]) for r in listed] == [
        ("lora-request-canary", "RolledBack", f"{kind} default/routed ({api_version})")
    ]
    assert listed[0]["last_decision"]["action"] == "rollback"
    assert "lora-request-canary" not in nothing
