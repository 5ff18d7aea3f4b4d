"""The outcome of a run as data: one document per rollout (phase, weights, every decision
with its checks), for ``replay --json``, the terminal summary and the daemon's exit.

Must not: print, or write to a routed object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from analyzer.routers.base import RouterError
from analyzer.runtime.controller import RolloutController


async def _weights(c: RolloutController) -> dict[str, int | None]:
    try:
        return dict((await c.router.read()).targets)
    except RouterError as exc:
        c.error = c.error or str(exc)
        return {}


async def summarize(controllers: Sequence[RolloutController]) -> list[dict[str, Any]]:
    """Every object is read at once: at shutdown, N slow reads must not add up."""
    out = []
    read = await asyncio.gather(*(_weights(c) for c in controllers))
    for c, weights in zip(controllers, read, strict=True):
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
                                    "effect_kind",
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
