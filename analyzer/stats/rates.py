"""One-sided tests that the canary's error rate exceeds the baseline's by more than a margin.

``tolerance`` is an absolute difference of proportions (0.01 = one percentage point).
- tolerance 0: Fisher's exact test, conditional on the total errors: exact at any count,
  including zero errors on either side.
- tolerance > 0: the Farrington-Manning score test of H0: p_canary - p_baseline <= tolerance
  (restricted maximum likelihood under H0, found numerically, so zero counts are safe). At small
  counts the score test can run slightly liberal, so its p-value is never allowed below Fisher's
  (the larger of the two is reported): a canary is only failed if it is also worse than the
  baseline by Fisher's standard.

Every result carries the difference of proportions and its Newcombe hybrid-score interval.

Must not: read clocks or do I/O; decide pass/fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import special as spspecial
from scipy import stats as sps


@dataclass(frozen=True)
class RateResult:
    p_value: float
    z: float | None
    method: Literal["fisher", "score"]
    n_baseline: int
    n_canary: int
    errors_baseline: int
    errors_canary: int
    effect: float
    """p_canary - p_baseline."""
    ci: tuple[float, float]
    """Two-sided (1 - 2 alpha) Newcombe interval of the difference."""
    p_fisher: float = 1.0
    """Fisher's exact one-sided p-value (no margin): the small-count floor."""


def wilson_interval(x: int, n: int, z: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    x_canary: int, n_canary: int, x_baseline: int, n_baseline: int, alpha: float
) -> tuple[float, float]:
    z = -float(spspecial.ndtri(alpha))
    p1, p2 = x_canary / n_canary, x_baseline / n_baseline
    l1, u1 = wilson_interval(x_canary, n_canary, z)
    l2, u2 = wilson_interval(x_baseline, n_baseline, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


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


def farrington_manning(
    x_canary: int, n_canary: int, x_baseline: int, n_baseline: int, delta: float
) -> tuple[float, float]:
    """z and one-sided p for H0: p_canary - p_baseline <= delta."""
    p1_t, p2_t = restricted_mle(x_canary, n_canary, x_baseline, n_baseline, delta)
    var = p1_t * (1 - p1_t) / n_canary + p2_t * (1 - p2_t) / n_baseline
    diff = x_canary / n_canary - x_baseline / n_baseline - delta
    if var <= 0:
        z = math.inf if diff > 0 else (-math.inf if diff < 0 else 0.0)
    else:
        z = diff / math.sqrt(var)
    return z, float(spspecial.ndtr(-z))


def fisher_greater(x_canary: int, n_canary: int, x_baseline: int, n_baseline: int) -> float:
    table = [[x_canary, n_canary - x_canary], [x_baseline, n_baseline - x_baseline]]
    return float(sps.fisher_exact(table, alternative="greater").pvalue)


def compare_rates(
    errors_baseline: int,
    n_baseline: int,
    errors_canary: int,
    n_canary: int,
    *,
    tolerance: float,
    alpha: float,
) -> RateResult:
    if n_baseline <= 0 or n_canary <= 0:
        raise ValueError("both groups need at least one request")
    if not (0 <= errors_baseline <= n_baseline and 0 <= errors_canary <= n_canary):
        raise ValueError("error counts must lie in [0, n]")
    if not (0 <= tolerance < 1):
        raise ValueError("tolerance must be in [0, 1)")
    p_fisher = fisher_greater(errors_canary, n_canary, errors_baseline, n_baseline)
    z: float | None = None
    method: Literal["fisher", "score"] = "fisher"
    p = p_fisher
    if tolerance > 0:
        z, p_score = farrington_manning(
            errors_canary, n_canary, errors_baseline, n_baseline, tolerance
        )
        p = max(p_score, p_fisher)
        method = "score"
    return RateResult(
        p_value=p,
        z=z,
        method=method,
        n_baseline=n_baseline,
        n_canary=n_canary,
        errors_baseline=errors_baseline,
        errors_canary=errors_canary,
        effect=errors_canary / n_canary - errors_baseline / n_baseline,
        ci=newcombe_interval(errors_canary, n_canary, errors_baseline, n_baseline, alpha),
        p_fisher=p_fisher,
    )
