"""Weights written, traffic not following: the gateway ignores the object the daemon writes
(a second object or group routes the model, a stale config). The rollout must pause and say
so instead of judging a canary share it does not control; a gateway that follows the weights
(the closed-loop simulation) must never trip it. Over HTTP against the API emulator, with the
controller as the daemon builds it (traffic_follows)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from analyzer.notify.base import NoopNotifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.integration.test_kube_router import FLAVOURS, _object, _rule, _weights
from tests.servers.kubeapi import KubeApi

pytestmark = pytest.mark.slow
KIND, API_VERSION = FLAVOURS[1]


async def _run(api: KubeApi, log: Path, follows: bool = True) -> RolloutController:
    async with client.ApiClient(client.Configuration(host=api.url)) as ac:
        loaded = _rule(KIND, API_VERSION)
        c = RolloutController(
            loaded, make_router(loaded, api=ac), NoopNotifier(), traffic_follows=follows
        )
        engine = Engine([c])
        lines = log.read_bytes().splitlines()
        for i in range(0, len(lines), 200):  # about 4 s of traffic at a time
            await engine.feed_lines(lines[i : i + 200])
        await engine.finish()
    return c


def test_a_gateway_that_ignores_the_weights_pauses_the_rollout(long_log: Path) -> None:
    # long_log: the canary keeps half of the traffic whatever the object says
    with KubeApi() as api:
        api.put(_object(KIND, API_VERSION))
        c = asyncio.run(_run(api, long_log))
        obj = api.get(API_VERSION, KIND, "routed")
    assert [d.action for d in c.decisions] == ["start", "pause"]
    reason = c.decisions[-1].reason
    assert "weights written, traffic not following" in reason
    shown = re.search(
        r"the weights give the canary 10\.0%, in the access log it got ([\d.]+)%", reason
    )
    assert shown is not None and 40 < float(shown.group(1)) < 60, reason
    assert c.state is not None and c.state.phase == "Paused"
    assert c.state.canary_percent == 10  # no step taken on traffic it does not control
    assert sum(w for n, w in _weights(obj).items() if n.startswith("tweet")) == 10
    # a replay (the default) judges recorded traffic without this check
    with KubeApi() as api:
        api.put(_object(KIND, API_VERSION))
        replayed = asyncio.run(_run(api, long_log, follows=False))
    assert "pause" not in [d.action for d in replayed.decisions]


def test_a_gateway_that_follows_the_weights_is_never_paused(
    simulated_log: Callable[..., Path],
) -> None:
    with KubeApi() as api:
        api.put(_object(KIND, API_VERSION))
        c = asyncio.run(_run(api, simulated_log(canary_ttft_factor=1.0)))
    assert [d.action for d in c.decisions] == ["start", "advance", "advance", "promote"]
