"""The TrafficRouter protocol: read and write one routed object's targets for one virtual model.

Every write names the version it was computed from; a router whose object changed since then
raises ``ConflictError`` instead of overwriting, so a human edit is never silently lost. Weights
and the rollout state annotation go out in one write, so they cannot disagree.

Must not: decide anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from analyzer.rollout.weights import Target

COMMAND_PREFIX = "canary-analyzer.io/command."


def command_key(rule_name: str) -> str:
    """Annotation a human sets to pause/resume/abort/promote one rule's rollout."""
    return COMMAND_PREFIX + rule_name


class RouterError(Exception):
    """The object cannot be used: missing, malformed, or not routing the rule's model."""


class ConflictError(RouterError):
    """The object changed since the version a write was computed from."""


class NotLeaderError(RouterError):
    """This replica lost the lease between its decision and the write: the write is dropped,
    the decision is the new leader's to make."""


class TransientRouterError(RouterError):
    """The API could not answer now (unreachable, timed out, overloaded, 5xx, or the object
    missing, as while it is deleted and recreated): retry later; the rollout is not lost."""


@dataclass(frozen=True)
class RoutedObject:
    version: str
    targets: tuple[Target, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    inconsistency: str | None = None
    """Set when the object routes the model two ways at once (an HTTPRoute whose re-weighted
    rules disagree): ``targets`` then holds the first way only. A rollout refuses to start on
    it, and pauses when it appears mid-rollout (a human edit)."""
    refusal: str | None = None
    """Set when the controller that reads the object says it does not take it (its Ready /
    Accepted / ResolvedRefs condition False for the current generation). A rollout refuses to
    start on it, and pauses when it appears after a write of weights."""


class TrafficRouter(Protocol):
    @property
    def describe(self) -> str:
        """Human name of the object, for logs and notifications."""
        ...

    async def check_served(self) -> None:
        """Raise ``RouterError`` naming the fix when the object's API cannot be used at all
        (a cluster that does not serve its apiVersion); a no-op for routers without one."""
        ...

    async def watch(
        self, on_change: Callable[[RoutedObject], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Call ``on_change`` on every change of the object until ``stop``; routers that
        cannot be watched return at once (their object is read at every judgment)."""
        ...

    async def read(self) -> RoutedObject: ...

    async def write(
        self,
        *,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        """Set targets (None: leave them) and annotations (None value: delete) atomically."""
        ...
