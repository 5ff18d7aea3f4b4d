"""The notification outbox, kept in the rollout's state annotation (no database of our own).

Each write of the state a decision makes also records ``notified_until``: the time of the
last decision whose notifications all settled (sent, or given up after their retries), in the
order they were announced. No write is made for it alone while the rollout runs. A leader that
adopts the state — a restart, a SIGKILL, a new replica taking over — sends the decisions after
it again, with the same Idempotency-Key, so a webhook receiver can drop a copy it already has.
So a notification is never lost to a crash; what a crash can cost is a repeat of the last
decision or two (Slack has no dedupe: it may show one twice). A finished rollout makes one
more state write once its last notifications settle, so a restart later repeats nothing.

Must not: decide anything, or read a clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from analyzer.notify.base import Notification
from analyzer.rollout.state import Decision, RolloutState
from analyzer.runtime.parts import ControllerParts


def watermark(
    state: RolloutState, announced: Sequence[Notification], unsettled: frozenset[str]
) -> float:
    """``notified_until`` for ``state``: advanced over the announced notifications that have
    settled, up to the first that has not; never moved back."""
    until = state.notified_until
    for n in announced:
        if n.key in unsettled:
            break
        until = max(until, n.decision.at)
    return until


def to_resend(state: RolloutState, announced: Sequence[Notification]) -> list[Decision]:
    """The decisions of an adopted state whose notifications may not have gone out, less the
    ones this process announced itself (still in its queues, not lost)."""
    mine = {(n.decision.at, n.decision.action) for n in announced}
    return [
        d for d in state.history if d.at > state.notified_until and (d.at, d.action) not in mine
    ]


class Outbox(ControllerParts):
    """The controller's outbox (a mixin over its attributes and its guarded writes)."""

    async def _resend(self, adopted: RolloutState) -> None:
        """Send the adopted state's decisions that may not have gone out."""
        if self.notifier.unsettled() is None:
            return  # no queue: nothing of them could have been lost
        for decision in to_resend(adopted, self.outbox):
            notification = self.announcer.notification(None, adopted, decision, None)
            self.outbox.append(notification)
            await self.notifier.notify(notification)

    async def settle_outbox(self, now: float) -> None:
        """A finished rollout makes no more writes: record in its state once its last
        notifications settled, so that the next adopter sends none of them again."""
        s = self.state
        if s is None or not s.finished or self.error or self.retired or self.backoff.outage:
            return
        unsettled = self.notifier.unsettled()
        if unsettled is None:
            return
        until = watermark(s, self.outbox, unsettled)
        if until <= s.notified_until:
            return
        settled = replace(s, notified_until=until)

        async def write(at: float) -> None:
            await self._apply(await self.router.read(), settled, [], {})

        await self._guarded(write, now)
