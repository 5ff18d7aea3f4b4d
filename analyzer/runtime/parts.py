"""What the controller's mixins (outage.py, outbox.py, reactions.py) may use of it: its
attributes and its guarded writes, declared once; controller.py defines them.

Must not: hold behaviour; every method here is a declaration the controller overrides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from analyzer.notify.base import Notification, Notifier
from analyzer.rollout.backoff import Backoff
from analyzer.rollout.machine import RolloutAction
from analyzer.rollout.state import RolloutState
from analyzer.routers.base import RoutedObject, TrafficRouter
from analyzer.runtime.announce import Announcer


class ControllerParts:
    """The controller as its mixins see it."""

    name: str
    state: RolloutState | None
    error: str | None
    retired: bool
    backoff: Backoff
    next_judgment_at: float | None
    last_seen_version: str | None
    traffic_follows: bool
    router: TrafficRouter
    notifier: Notifier
    announcer: Announcer
    outbox: list[Notification]
    _log: Any

    async def _guarded(self, attempt: Callable[[float], Awaitable[object]], now: float) -> None: ...

    async def _resume(self, now: float) -> None: ...

    async def _apply(
        self,
        obj: RoutedObject,
        state: RolloutState,
        actions: list[RolloutAction],
        extra: dict[str, str | None],
    ) -> None: ...

    async def _try_apply(
        self,
        obj: RoutedObject,
        state: RolloutState,
        actions: list[RolloutAction],
        extra: dict[str, str | None],
    ) -> None: ...
