"""Leader-only router: every write asks first whether this replica still leads.

A leader that was frozen (SIGSTOP, a long GC pause, a partition) may wake with a decision made
on what it read before another replica took over. The lease is checked immediately before each
write and each retry of one (``is_leader`` holds only while the last renewal is within its
renew deadline), so such a decision is dropped, not written; the write itself carries the
resourceVersion it was decided on, so an object that changed meanwhile is refused by the API.

Must not: decide anything, or write when ``is_leader`` says no.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from analyzer.rollout.weights import Target
from analyzer.routers.base import NotLeaderError, RoutedObject, TrafficRouter


class LeaderOnlyRouter:
    def __init__(self, inner: TrafficRouter, is_leader: Callable[[], bool]) -> None:
        self.inner = inner
        self.is_leader = is_leader

    @property
    def describe(self) -> str:
        return self.inner.describe

    async def check_served(self) -> None:
        await self.inner.check_served()

    async def watch(
        self, on_change: Callable[[RoutedObject], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        await self.inner.watch(on_change, stop)

    async def read(self) -> RoutedObject:
        return await self.inner.read()

    async def write(
        self,
        *,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        if not self.is_leader():
            raise NotLeaderError(
                f"{self.describe}: this replica no longer holds the lease; the leader decides"
            )
        return await self.inner.write(version=version, targets=targets, annotations=annotations)
