"""Transient API faults under a whole rollout: the real kubernetes_asyncio client, the API
emulator with its fault layer in front (tests/servers/kubeapi.py), the engine the daemon runs.

What must hold for each: the rule waits (degraded, never in error), keeps its step and its
evidence, resumes by itself once the API answers, and finishes as it would have without the
fault; the annotation agrees with the weights; another rule on another object is not touched.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from analyzer.notify.base import Notification
from analyzer.rollout.backoff import Backoff
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.factory import make_router
from analyzer.routers.kube import KubeRouter
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.integration.test_kube_router import FLAVOURS, _object, _rule, _weights
from tests.servers.kubeapi import Fault, KubeApi

pytestmark = pytest.mark.slow
KIND, API_VERSION = FLAVOURS[1]
ANNOUNCE_AFTER = 30.0
"""Event seconds an outage lasts before it is announced (300 in production)."""
CHUNK = 500
"""Lines fed at once (10 s of traffic); faults start and end on these boundaries."""
OUTAGE = (6000, 12000)
"""Lines (at 50 per second: from 120 s to 240 s, the rollout's steps at 25% and 50%)."""


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def notify(self, notification: Notification) -> None:
        self.sent.append(notification)

    async def aclose(self, timeout: float) -> None:
        return None

    def unsettled(self) -> frozenset[str] | None:
        return None  # recorded at once: nothing to lose


def _controller(ac: client.ApiClient, name: str = "routed") -> tuple[RolloutController, Recorder]:
    loaded = _rule(KIND, API_VERSION)
    if name != "routed":
        spec = loaded.rule.spec.model_copy(
            update={"target": loaded.rule.spec.target.model_copy(update={"name": name})}
        )
        meta = loaded.rule.metadata.model_copy(update={"name": name})
        rule = loaded.rule.model_copy(update={"spec": spec, "metadata": meta})
        loaded = type(loaded)(rule, loaded.source, loaded.line)
    router = make_router(loaded, api=ac)
    assert isinstance(router, KubeRouter)
    router.timeout = 0.5  # a hung API server is given up on quickly
    notes = Recorder()
    controller = RolloutController(loaded, router, notes, rng=random.Random(7))
    controller.backoff = Backoff(random.Random(7), announce_after=ANNOUNCE_AFTER)
    return controller, notes


async def _replay(
    api: KubeApi, log: Path, between: Callable[[int], None], objects: tuple[str, ...]
) -> list[tuple[RolloutController, Recorder]]:
    async with client.ApiClient(client.Configuration(host=api.url)) as ac:
        pairs = [_controller(ac, name) for name in objects]
        engine = Engine([c for c, _ in pairs])
        lines = log.read_bytes().splitlines()
        for i in range(0, len(lines), CHUNK):
            between(i)
            await engine.feed_lines(lines[i : i + CHUNK])
        await engine.finish()
    return pairs


def _run(
    log: Path, between: Callable[[KubeApi, int], None], objects: tuple[str, ...] = ("routed",)
) -> tuple[KubeApi, list[tuple[RolloutController, Recorder]]]:
    with KubeApi() as api:
        for name in objects:
            obj = _object(KIND, API_VERSION)
            obj["metadata"]["name"] = name
            api.put(obj)
        pairs = asyncio.run(_replay(api, log, lambda i: between(api, i), objects))
    return api, pairs


def _consistent(api: KubeApi, c: RolloutController, name: str = "routed") -> dict[str, int]:
    """The object's weights, which its state annotation must agree with."""
    obj = api.get(API_VERSION, KIND, name)
    state = RolloutState.loads(obj["metadata"]["annotations"][annotation_key(c.name)])
    weights = _weights(obj)
    assert dict(state.applied) == weights
    assert state == c.state
    return weights


def notified_once(c: RolloutController, notes: Recorder) -> list[str]:
    """Nothing was sent twice (per Idempotency-Key), and every decision the rollout announced
    was sent, in the order decided (outage notices come between them); the actions sent, for
    the test's own assertions."""
    keys = [n.key for n in notes.sent]
    assert len(set(keys)) == len(keys), "a notification was sent twice"
    decided = [n.key for n in c.announced]
    assert [k for k in keys if k in set(decided)] == decided
    return [n.decision.action for n in notes.sent]


FAULTS: dict[str, Fault] = {
    "500s": Fault("status", times=10**6, status=500, path="/routed"),
    "503s on writes": Fault("status", times=10**6, status=503, path="/routed", method="PATCH"),
    "hangs": Fault("hang", times=10**6, seconds=5, path="/routed"),  # 10 x the timeout
    "resets": Fault("reset", times=10**6, path="/routed"),
    "429s": Fault("status", times=10**6, status=429, path="/routed"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_an_api_outage_mid_rollout_waits_and_resumes(name: str, long_log: Path) -> None:
    """Two minutes of event time without the API, from the second step on: before, one failed
    request put the rule in error for the life of the process, the canary stuck at its step."""
    begin, end = OUTAGE

    def fault(api: KubeApi, i: int) -> None:
        if i == begin:
            api.inject(copy.deepcopy(FAULTS[name]))
        if i == end:
            api.heal()

    api, [(c, notes)] = _run(long_log, fault)
    assert api.faulted, "the fault never hit a request"
    assert c.error is None and c.degraded is None
    actions = [d.action for d in c.decisions]
    assert actions[0] == "start" and actions[-1] == "promote", actions
    assert "error" not in actions and "rollback" not in actions
    said = notified_once(c, notes)
    assert said.count("degraded") == 1 and said.count("recovered") == 1, said
    assert said.index("degraded") < said.index("recovered")
    assert said.count("promote") == 1  # nothing decided twice
    weights = _consistent(api, c)
    assert set(weights) == {f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4")}


def test_a_blip_is_retried_without_paging_anyone(long_log: Path) -> None:
    """Three failed requests: retried within seconds, no notification, the same decisions at
    the same times as without them."""

    def blip(api: KubeApi, i: int) -> None:
        if i == 3000:
            api.inject(Fault("status", times=3, status=500, path="/routed"))

    _, [(clean, _)] = _run(long_log, lambda api, i: None)
    api, [(c, notes)] = _run(long_log, blip)
    assert len(api.faulted) == 3
    assert notified_once(c, notes) == [d.action for d in clean.decisions]
    late = [b.at - a.at for a, b in zip(clean.decisions, c.decisions, strict=True)]
    assert all(0 <= d <= 2 * clean.spec.analysis.interval.real for d in late), late


def test_a_409_storm_is_outlasted(long_log: Path) -> None:
    """Every write loses its race ten times in a row: before, three lost races were an error
    for good."""

    def storm(api: KubeApi, i: int) -> None:
        if i == 3000:
            api.inject(Fault("status", times=10, status=409, path="/routed", method="PATCH"))

    api, [(c, notes)] = _run(long_log, storm)
    notified_once(c, notes)
    assert sum(1 for kind, method, _ in api.faulted if method == "PATCH") == 10
    assert c.error is None
    assert [d.action for d in c.decisions][-1] == "promote"
    _consistent(api, c)


@pytest.mark.parametrize("with_state", [True, False])
def test_a_deleted_and_recreated_object_is_adopted(with_state: bool, long_log: Path) -> None:
    """Deleted mid-step and recreated 3,000 lines later: restored with its annotation (a
    backup, a GitOps sync of the live object) the step resumes; recreated bare, with the
    original weights, the rollout starts again from them."""
    kept: dict[str, Any] = {}

    def recreate(api: KubeApi, i: int) -> None:
        if i == 3000:
            kept.update(api.get(API_VERSION, KIND, "routed"))
            api.delete(API_VERSION, KIND, "routed")
        if i == 6000:
            obj = copy.deepcopy(kept) if with_state else _object(KIND, API_VERSION)
            obj["metadata"].pop("resourceVersion", None)
            api.put(obj)

    api, [(c, notes)] = _run(long_log, recreate)
    notified_once(c, notes)
    actions = [d.action for d in c.decisions]
    assert c.error is None and actions[-1] == "promote", actions
    assert actions.count("start") == (1 if with_state else 2)
    _consistent(api, c)


def test_one_objects_outage_leaves_the_other_rule_alone(long_log: Path) -> None:
    """Two rules on two objects; only the first object's requests fail for a while."""
    end = OUTAGE[1]

    def fault(api: KubeApi, i: int) -> None:
        if i == 3000:
            api.inject(Fault("status", times=10**6, status=500, path="/routed-a"))
        if i == end:
            api.heal()

    _, [(clean, _)] = _run(long_log, lambda api, i: None, ("routed-b",))
    api, [(a, a_notes), (b, b_notes)] = _run(long_log, fault, ("routed-a", "routed-b"))
    notified_once(a, a_notes)
    assert notified_once(b, b_notes) == [d.action for d in clean.decisions]
    assert all("/routed-a" in path for _, _, path in api.faulted)
    assert [(d.at, d.action) for d in b.decisions] == [(d.at, d.action) for d in clean.decisions]
    assert a.decisions[-1].action == "promote" and a.error is None
    _consistent(api, a, "routed-a")
    _consistent(api, b, "routed-b")
