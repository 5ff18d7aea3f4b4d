"""What a rule does when its object's API fails: end it (an error nobody can wait out), or
wait with backoff and tell people once when the wait lasts, and when it is over.

Must not: decide a rollout's next step, or read a clock (``now`` is passed in).
"""

from __future__ import annotations

from analyzer.runtime.parts import ControllerParts


class OutageNotices(ControllerParts):
    """The controller's outage handling (a mixin over its attributes)."""

    async def _fail(self, message: str, now: float) -> None:
        """Stop acting on this rule and tell people: a rollout that cannot act is an incident."""
        self.backoff.recovered()
        self.error = message
        self._log.error("rollout_error", error=message)
        await self.notifier.notify(self.announcer.notice(self.state, "error", message, now))

    async def _degrade(self, message: str, now: float) -> None:
        """Wait for the API: retry with backoff; tell people once if it lasts."""
        announce = self.backoff.failed(now, message)
        outage = self.backoff.outage
        assert outage is not None
        self.next_judgment_at = outage.retry_at
        self._log.warning(
            "rollout_degraded",
            error=message,
            attempt=outage.attempts,
            retry_in=round(outage.retry_at - now, 1),
        )
        if announce:
            message = f"{message}; retrying for {now - outage.since:.0f}s, the step is kept"
            await self.notifier.notify(self.announcer.notice(self.state, "degraded", message, now))

    async def _recovered(self, now: float) -> None:
        outage = self.backoff.recovered()
        assert outage is not None
        self._log.info("rollout_recovered", after=round(now - outage.since, 1))
        if outage.announced:
            message = f"the API answers again after {now - outage.since:.0f}s"
            await self.notifier.notify(self.announcer.notice(self.state, "recovered", message, now))
