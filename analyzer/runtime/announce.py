"""What a controller tells people about a decision, and what the gates say before it is made.

Must not: decide a rollout's next step, or write the routed object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from analyzer.config import RuleSpec
from analyzer.gates.base import Gate, GateKind
from analyzer.notify.base import Notification
from analyzer.rollout.machine import Announce, RolloutAction
from analyzer.rollout.state import Action, Decision, RolloutState
from analyzer.rollout.weights import Target
from analyzer.routers.base import RoutedObject

log = structlog.get_logger("analyzer.controller")

GATE_KINDS: dict[str, GateKind] = {"advance": "confirm-step", "promote": "confirm-promotion"}


@dataclass(frozen=True)
class Announcer:
    """The fixed part of one rule's notifications."""

    rule: str
    revision: str
    object: str
    model: str
    steps: tuple[int, ...]
    dry_run: bool

    @classmethod
    def of(
        cls, rule: str, revision: str, describe: str, spec: RuleSpec, dry_run: bool
    ) -> Announcer:
        return cls(rule, revision, describe, spec.model, tuple(spec.steps), dry_run)

    def notice(
        self, state: RolloutState | None, action: Action, message: str, now: float
    ) -> Notification:
        """A notification about the rule itself (an error, an outage), not about a step."""
        step, percent = (state.step, state.canary_percent) if state is not None else (0, 0)
        return self.notification(None, state, Decision(now, action, message, step, percent), None)

    def notification(
        self,
        obj: RoutedObject | None,
        state: RolloutState | None,
        decision: Decision,
        targets: tuple[Target, ...] | None,
    ) -> Notification:
        """The notification of ``decision``; without an object (an error before or while
        reading it) the weights are unknown and left empty."""
        before = tuple(obj.targets) if obj is not None else ()
        return Notification(
            rule=self.rule,
            revision=self.revision,
            object=self.object,
            model=self.model,
            steps=self.steps,
            phase=state.phase if state is not None else "Error",
            decision=decision,
            weights_before=before,
            weights_after=targets if targets is not None else before,
            dry_run=self.dry_run,
        )


async def gates_refusal(
    gates: Sequence[Gate],
    announcer: Announcer,
    obj: RoutedObject,
    state: RolloutState,
    actions: list[RolloutAction],
    targets: tuple[Target, ...] | None,
) -> str | None:
    """None when every gate for this transition says yes, else why not."""
    for action in actions:
        if not isinstance(action, Announce) or action.decision.action not in GATE_KINDS:
            continue
        kind = GATE_KINDS[action.decision.action]
        asked = [g for g in gates if g.kind == kind]
        if not asked:
            return None
        pending = announcer.notification(obj, state, action.decision, targets)
        for gate in asked:
            answer = await gate.confirm(pending)
            if not answer.open:
                log.warning(
                    "gate_closed",
                    rule=announcer.rule,
                    gate=gate.name,
                    kind=kind,
                    reason=answer.reason,
                )
                return answer.reason
    return None
