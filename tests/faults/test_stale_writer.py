"""A leader that lost its lease between reading the object and writing it: the write is
dropped, nobody is notified, and the rollout goes on from what the object holds.

Before: a leader frozen (SIGSTOP) for 25 s while its judgment GET was in flight woke after
another replica had taken over and wrote (PATCH 409, then PATCH 200: a pause with its stale
step) and sent a spurious webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.base import RoutedObject
from analyzer.routers.factory import make_router
from analyzer.routers.kube import KubeRouter
from analyzer.routers.leading import LeaderOnlyRouter
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.faults.test_api_faults import API_VERSION, CHUNK, KIND, Recorder, notified_once
from tests.integration.test_kube_router import _object, _rule
from tests.servers.kubeapi import KubeApi

pytestmark = pytest.mark.slow


class FreezesOnRead(KubeRouter):
    """A read that, once armed, returns after the lease has run out (the process was frozen
    with the GET in flight)."""

    def __init__(self, inner: KubeRouter, leading: list[bool]) -> None:
        super().__init__(inner.api, inner.target, inner.model, inner.timeout)
        self.leading = leading
        self.armed = False

    async def read(self) -> RoutedObject:
        obj = await super().read()
        if self.armed:
            self.armed, self.leading[0] = False, False
        return obj


class CountsRefusals(LeaderOnlyRouter):
    refused = 0

    async def write(self, **kwargs: Any) -> RoutedObject:
        self.refused += 0 if self.is_leader() else 1
        return await super().write(**kwargs)


def test_a_write_after_the_lease_ran_out_is_dropped(long_log: Path) -> None:
    leading = [True]
    lines = long_log.read_bytes().splitlines()

    async def go() -> tuple[RolloutController, Recorder, int]:
        async with client.ApiClient(client.Configuration(host=api.url)) as ac:
            loaded = _rule(KIND, API_VERSION)
            inner = make_router(loaded, api=ac)
            assert isinstance(inner, KubeRouter)
            freezing = FreezesOnRead(inner, leading)
            guarded = CountsRefusals(freezing, lambda: leading[0])
            notes = Recorder()
            c = RolloutController(loaded, guarded, notes)
            engine = Engine([c])  # it led when it judged: only the write finds out
            for i in range(0, len(lines), CHUNK):
                # Freeze across judgments at 25% until one of them decides to write.
                freezing.armed = c.state is not None and c.state.step == 1 and not guarded.refused
                writes, said = len(api.writes), len(notes.sent)
                await engine.feed_lines(lines[i : i + CHUNK])
                if not leading[0]:
                    assert len(api.writes) == writes  # the decision across the freeze: unwritten
                    assert len(notes.sent) == said  # and unannounced
                    leading[0] = True  # the lease is won back
            await engine.finish()
        return c, notes, guarded.refused

    with KubeApi() as api:
        api.put(_object(KIND, API_VERSION))
        c, notes, refused = asyncio.run(go())
        obj = api.get(API_VERSION, KIND, "routed")
    assert refused >= 1
    assert notified_once(c, notes) == [d.action for d in c.decisions]
    assert [d.action for d in c.decisions] == ["start", "advance", "advance", "promote"]
    state = RolloutState.loads(obj["metadata"]["annotations"][annotation_key(c.name)])
    assert state == c.state
