"""When to retry a rollout the API failed under, and when to tell people about it.

A transient failure (the API unreachable, timing out, 5xx, 429, the object missing, writes that
keep conflicting) starts an outage; every failed retry doubles the delay up to ``cap``, with
equal jitter (half fixed, half uniform) so that replicas and rules do not retry in step. An
outage is announced once, when it has lasted ``announce_after`` seconds (a blip of a few seconds
is logged, not paged); its end is announced only if its start was.

Must not: read a clock or sleep (times are passed in), or draw from the global random state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_DELAY = 1.0
MAX_DELAY = 60.0
ANNOUNCE_AFTER = 300.0


@dataclass
class Outage:
    since: float
    reason: str
    attempts: int
    retry_at: float
    announced: bool = False


class Backoff:
    def __init__(
        self,
        rng: random.Random,
        base: float = BASE_DELAY,
        cap: float = MAX_DELAY,
        announce_after: float = ANNOUNCE_AFTER,
    ) -> None:
        self.rng = rng
        self.base = base
        self.cap = cap
        self.announce_after = announce_after
        self.outage: Outage | None = None

    def delay(self, attempts: int) -> float:
        """Seconds before retry number ``attempts`` (1-based): in [d/2, d], d = base * 2^(n-1)
        capped at ``cap``."""
        d = min(self.cap, self.base * 2.0 ** min(attempts - 1, 62))
        return d / 2 + self.rng.uniform(0.0, d / 2)

    def failed(self, now: float, reason: str) -> bool:
        """Record a failure at ``now``; True once per outage, when it is time to announce it."""
        if self.outage is None:
            self.outage = Outage(since=now, reason=reason, attempts=0, retry_at=now)
        o = self.outage
        o.attempts += 1
        o.reason = reason
        o.retry_at = now + self.delay(o.attempts)
        if not o.announced and now - o.since >= self.announce_after:
            o.announced = True
            return True
        return False

    def recovered(self) -> Outage | None:
        """End the outage; the outage that ended, if any."""
        outage, self.outage = self.outage, None
        return outage
