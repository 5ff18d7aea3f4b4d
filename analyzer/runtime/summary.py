"""The outcome of a run as data: one document per rollout (phase, weights, every decision
with its checks), for ``replay --json``, the terminal summary and the daemon's exit.

Must not: print, or write to a routed object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analyzer.routers.base import RouterError
from analyzer.runtime.controller import RolloutController


async def summarize(controllers: Sequence[RolloutController]) -> list[dict[str, Any]]:
    out = []
    for c in controllers:
        try:
            obj = await c.router.read()
            weights: dict[str, int | None] = dict(obj.targets)
        except RouterError as exc:
            weights = {}
            c.error = c.error or str(exc)
        s = c.state
        out.append(
            {
                "name": c.name,
                "revision": c.revision,
                "phase": s.phase if s else "Error",
                "step": s.step if s else None,
                "canary_percent": s.canary_percent if s else None,
                "weights": weights,
                "error": c.error,
                "unattributed": dict(c.unattributed.most_common()),
                "decisions": [
                    {
                        **{k: v for k, v in n.decision.to_json().items() if k != "checks"},
                        "weights": dict(n.weights_after),
                        "checks": [
                            {
                                k: ch.get(k)
                                for k in (
                                    "name",
                                    "status",
                                    "p_value",
                                    "p_adjusted",
                                    "p_within",
                                    "effect",
                                    "ci",
                                    "bound",
                                    "n_baseline",
                                    "n_canary",
                                    "strata",
                                    "method",
                                )
                            }
                            for ch in n.decision.checks
                        ],
                    }
                    for n in c.announced
                ],
            }
        )
    return out
