"""Dry-run router: reads through to the real object, writes nothing.

It shows its caller the object as it would be after the writes it swallowed (targets and
annotations overlaid on the real object), so the controller behaves exactly as live and does not
mistake its own unwritten weights for a human edit.

Must not: write to the wrapped router.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from analyzer.rollout.weights import Target
from analyzer.routers.base import RoutedObject, TrafficRouter


class DryRunRouter:
    def __init__(self, inner: TrafficRouter) -> None:
        self.inner = inner
        self.targets: tuple[Target, ...] | None = None
        self.annotations: dict[str, str | None] = {}
        self.writes = 0

    @property
    def describe(self) -> str:
        return f"{self.inner.describe} (dry run)"

    async def check_served(self) -> None:
        await self.inner.check_served()

    async def watch(
        self, on_change: Callable[[RoutedObject], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """The real object's changes (a human edit shows there, not in the overlay)."""
        await self.inner.watch(on_change, stop)

    async def read(self) -> RoutedObject:
        real = await self.inner.read()
        annotations = {**real.annotations, **self.annotations}
        return replace(
            real,
            targets=self.targets if self.targets is not None else real.targets,
            annotations={k: v for k, v in annotations.items() if v is not None},
        )

    async def write(
        self,
        *,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        self.writes += 1
        if targets is not None:
            self.targets = tuple(targets)
        self.annotations.update(annotations)
        return await self.read()
