"""Does the traffic follow the weights a controller wrote? Counted where the rule can count it.

From the access log (the step's requests per group from ``SETTLE`` seconds in), or, for a rule
with no access-log checks (no log is read), from the endpoint picker's rewrite decisions in
Prometheus. The verdict itself is rollout/guards.py's ``traffic_not_following``.

Must not: decide anything else, or read a clock (``now`` is passed in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer.analysis.windows import SETTLE
from analyzer.rollout.guards import traffic_not_following

if TYPE_CHECKING:
    from analyzer.runtime.controller import RolloutController


async def not_following(c: RolloutController, now: float) -> str | None:
    """Why ``c``'s traffic does not follow its weights (a pause reason), or None."""
    if c.state is None or c.windows is None:
        return None
    served: tuple[int, int] | None
    if c.spec.accesslog_checks:
        served = (c.windows.settled[0], c.windows.settled[1])
        source = "the access log"
    else:
        served = await c.prometheus.served(c.spec, c.state.step_started_at + SETTLE, now)
        source = "the endpoint picker's rewrite decisions"
    return traffic_not_following(served, c.state, c.spec, source)
