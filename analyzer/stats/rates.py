"""The restricted maximum-likelihood estimate behind the error-rate score statistic.

Under H0: p_canary - p_baseline = delta, the score statistic of a difference of proportions
(Farrington-Manning, Miettinen-Nurminen) standardizes the observed difference with the variance
at the MLE restricted to the null. The closed form is the root of a cubic; it is checked
against bounded numerical maximisation of the likelihood (tests/unit/test_rates.py: equal to
1e-6 on every count pair tried), which is also the fallback where the closed form leaves the
parameter space (zero counts).

Must not: read clocks or do I/O; decide pass/fail.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import special as spspecial


def restricted_mle(x1: int, n1: int, x2: int, n2: int, delta: float) -> tuple[float, float]:
    """MLE of (p1, p2) under p1 = p2 + delta (Farrington-Manning / Miettinen-Nurminen).

    The closed form (a cubic's root) is used when it lands inside the parameter space, else
    the likelihood is maximised numerically; both give the same answer where both apply.
    """
    closed = _restricted_mle_closed(x1, n1, x2, n2, delta)
    if closed is not None:
        return closed
    return restricted_mle_numeric(x1, n1, x2, n2, delta)


def _restricted_mle_closed(
    x1: int, n1: int, x2: int, n2: int, delta: float
) -> tuple[float, float] | None:
    p1, p2 = x1 / n1, x2 / n2
    theta = n2 / n1
    a = 1 + theta
    b = -(1 + theta + p1 + theta * p2 + delta * (theta + 2))
    c = delta * delta + delta * (2 * p1 + theta + 1) + p1 + theta * p2
    d = -p1 * delta * (1 + delta)
    v = b**3 / (27 * a**3) - b * c / (6 * a * a) + d / (2 * a)
    disc = b * b / (9 * a * a) - c / (3 * a)
    if disc <= 0:
        return None
    u = math.copysign(math.sqrt(disc), v) if v != 0 else math.sqrt(disc)
    w = (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3
    pt1 = 2 * u * math.cos(w) - b / (3 * a)
    pt2 = pt1 - delta
    eps = 1e-12
    if not (-eps <= pt1 <= 1 + eps and -eps <= pt2 <= 1 + eps):
        return None
    return min(1.0, max(0.0, pt1)), min(1.0, max(0.0, pt2))


def restricted_mle_numeric(x1: int, n1: int, x2: int, n2: int, delta: float) -> tuple[float, float]:
    """The same MLE by bounded numerical maximisation (reference and fallback)."""
    lo, hi = max(0.0, -delta), min(1.0, 1.0 - delta)
    eps = 1e-12

    def negloglik(p2: float) -> float:
        p1 = p2 + delta
        return -float(
            spspecial.xlogy(x1, p1)
            + spspecial.xlog1py(n1 - x1, -p1)
            + spspecial.xlogy(x2, p2)
            + spspecial.xlog1py(n2 - x2, -p2)
        )

    res = optimize.minimize_scalar(
        negloglik, bounds=(lo + eps, hi - eps), method="bounded", options={"xatol": 1e-10}
    )
    p2 = float(np.clip(res.x, lo, hi))
    return p2 + delta, p2
