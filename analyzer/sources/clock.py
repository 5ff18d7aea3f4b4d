"""The daemon's source when no access log is read: the wall clock alone drives judgments.

A rule set whose checks all query Prometheus (the endpoint picker's per-``target_model_name``
series: the only per-adapter evidence on llm-d / GIE >= 1.5, where the gateway's log no
longer says which adapter served a request) needs no Kafka. This source has the Kafka
source's shape (start, rewind, run, stop, readiness) so the daemon runs either the same way.

Must not: read anything, or judge (the engine does, when its clock advances).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

TICK = 1.0
"""Seconds between two advances of the engine's clock."""


class Advancing(Protocol):
    @property
    def started(self) -> bool: ...

    async def advance(self, now: float) -> None: ...


class EventSource(Protocol):
    """What the daemon runs to move its engine: Kafka ingestion, or the wall clock."""

    async def start(self, since: float | None = None, *, must_rewind: bool = True) -> None: ...

    async def rewind(self, since: float) -> None: ...

    def not_ready(self) -> str | None: ...

    async def run(
        self, stop: asyncio.Event, commit_every: float = 5.0, beat: Callable[[], None] = ...
    ) -> None: ...

    async def stop(self) -> None: ...


class WallClockSource:
    def __init__(self, engine: Advancing, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    async def start(self, since: float | None = None, *, must_rewind: bool = True) -> None:
        """Nothing to connect to or rewind: Prometheus keeps the history a judgment asks for."""

    async def rewind(self, since: float) -> None:
        """Nothing to read again (a new leader's queries cover the whole step anyway)."""

    def not_ready(self) -> str | None:
        return None

    async def run(
        self,
        stop: asyncio.Event,
        commit_every: float = 5.0,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Advance the engine to the wall clock every second until ``stop``."""
        while not stop.is_set():
            beat()
            if self.engine.started:
                await self.engine.advance(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK)

    async def stop(self) -> None:
        """Nothing to close."""
