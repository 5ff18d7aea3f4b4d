"""Others first: what people and the gateway did to a rule's object, handled before any
judgment — a command annotation, weights someone else changed, an object the gateway did not
take, or traffic that does not follow the weights written.

Must not: judge, or read a clock (``now`` is passed in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from analyzer.rollout import machine
from analyzer.rollout.guards import not_taken, outside_edit
from analyzer.rollout.machine import COMMANDS
from analyzer.routers.base import RoutedObject, command_key
from analyzer.runtime.actuation import not_following
from analyzer.runtime.parts import ControllerParts

if TYPE_CHECKING:
    from analyzer.runtime.controller import RolloutController


class Reactions(ControllerParts):
    """The controller's reactions to others (a mixin over its attributes and its writes)."""

    async def _react(self, obj: RoutedObject, now: float) -> bool:
        """Humans first: a command annotation, or weights someone else changed, or traffic
        that does not follow the weights (a pause). True when one was handled."""
        assert self.state is not None
        raw = obj.annotations.get(command_key(self.name))
        override = machine.parse_command(raw, command_key(self.name)) if raw else None
        if raw and override is None:
            self._log.warning("unknown_command", command=raw, known=list(COMMANDS))
        if override is not None:
            command, reason = override
            state, actions = machine.on_command(self.state, command, now, reason)
            await self._try_apply(obj, state, actions, {command_key(self.name): None})
            return True
        why = (
            outside_edit(self.state, obj.targets, obj.inconsistency)
            or not_taken(self.state, obj.refusal)
            or (self.traffic_follows and await not_following(cast("RolloutController", self), now))
        )
        if why:
            state, actions = machine.on_command(self.state, "pause", now, why)
            await self._try_apply(obj, state, actions, {})
            return True
        return False

    async def on_object_change(self, obj: RoutedObject, now: float) -> None:
        """A watch event: react to human edits and commands at once, not at the next look."""
        if self.state is None or self.state.finished or self.error is not None or self.retired:
            return
        if obj.version == self.last_seen_version:
            return
        self.last_seen_version = obj.version
        if self.backoff.outage is not None:
            await self._guarded(self._resume, now)  # the API answers again: resume at once
            return

        async def react(at: float) -> None:
            await self._react(obj, at)

        await self._guarded(react, now)
