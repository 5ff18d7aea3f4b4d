"""Anytime-valid confidence sequences for a canary's effect, stratified by rollout step.

A check has three outcomes, each on evidence: **harm** (the effect is shown beyond the
tolerance), **within** (it is shown inside the tolerance: non-inferiority) or neither. Both come
from one statistic Z(m): the standardized evidence that the effect exceeds m, pooled over the
strata (the rollout's steps) with inverse-variance weights, so a load change between steps
cannot bias it (each step compares canary and baseline served at the same time):

    Z(m) = sum_s I_s (theta_s(m) - theta_0) / sqrt(sum_s I_s)

- latencies: theta_s(m) = P(log canary - log baseline > m) in step s, by mid-ranks over all
  pairs (the Mann-Whitney U / (n1 n2)), theta_0 = 1/2, I_s = 12 n1 n2 / (n + 1);
- error rates: theta_s(m) = p_canary - p_baseline - m, theta_0 = 0, I_s = 1 / Var under the
  restricted MLE p_canary - p_baseline = m (Farrington-Manning), per step;
- tails: the same, for the share of each group's values above the stratum's pooled q-quantile
  (``exceedance_stratum``): a p99 regression is a rise of the canary's share above the p99.

Z(m) decreases in m. A normal-mixture SPRT (analyzer/stats/sequential.py) crosses 1/(2 alpha)
exactly when |Z| exceeds

    c(I) = sqrt((1 + r) / r * (2 log(1 / (2 alpha)) + log(1 + r))),   r = tau^2 I,

so the set {m : -c <= Z(m) <= c} is a (1 - 2 alpha) confidence sequence: with probability at
least 1 - alpha per side it contains the true effect at every look at once (Ville's inequality;
asymptotic, as the normal approximation of Z holds). The interval shown is that set, found by
bisection, and the outcome is read from it: harm when its lower end is above the tolerance,
within when its upper end is below. Both outcomes therefore bound their error by alpha however
often the rule looks: alpha is the chance of a false rollback (harm side, per check, before the
familywise correction) and of a false promotion (within side, with no correction needed: a
promotion needs every check within, an intersection-union test). ``kind="fixed"`` uses the
fixed-horizon normal quantile instead of c(I) (Kayenta-style; valid for one look only).

Measured accuracy (tests/unit/test_confidence.py): on one stratum, Z at the tolerance equals
scipy's Mann-Whitney z without continuity correction to 1e-9 on raw samples and within 0.03 on
0.2% log buckets; bisection ends within 1e-9 of the boundary; healthy-canary simulations keep
the interval's miss rate below alpha.

Must not: read clocks, keep state between looks, or decide the rollout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from analyzer.stats.histogram import FloatArray, LogHistogram, exact_correlation
from analyzer.stats.rates import restricted_mle
from analyzer.stats.sequential import error_share_log_lr, mixture_p

Boundary = Literal["sequential", "fixed"]
BISECTIONS = 64
RAW_MAX_PAIRS = 250_000
"""Above this many canary x baseline pairs a stratum is built from its histograms."""


def critical_z(information: float, alpha: float, tau: float, kind: Boundary) -> float:
    """|Z| beyond which one side is shown at level alpha (inf when it never can be)."""
    if kind == "fixed":
        return -float(special.ndtri(alpha))
    r = tau * tau * information
    if r <= 0:
        return math.inf
    return math.sqrt((1 + r) / r * (2 * math.log(1 / (2 * alpha)) + math.log1p(r)))


def one_sided_p(z: float, information: float, tau: float, kind: Boundary) -> float:
    """p for H0 'the effect is at most the margin' (small when z is large)."""
    if kind == "fixed":
        return float(special.ndtr(-z))
    return mixture_p(z, information, tau)


@dataclass(frozen=True)
class Evidence:
    """What the pooled data show about one effect, against one margin."""

    estimate: float
    """Pooled point estimate: where Z = 0 (log ratio or difference)."""
    lower: float
    upper: float
    """The confidence sequence at this look (may be infinite)."""
    z: float
    """Z at the margin: positive means the canary looks worse than the tolerance."""
    information: float
    p_harm: float
    """Always-valid p for H0: effect <= margin."""
    p_within: float
    """Always-valid p for H0: effect >= margin."""
    critical: float
    harm: bool
    """Shown beyond the margin: the interval's lower end is above it."""
    within: bool
    """Shown inside the margin: the interval's upper end is below it."""


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Root of a nonincreasing f with f(lo) >= 0 >= f(hi)."""
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _interval(
    z: Callable[[float], float],
    crit: Callable[[float], float],
    margin: float,
    lo: float,
    hi: float,
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of {m : |Z(m)| <= c}; each end on the side of the margin
    that Z(margin) says it is, so the interval and the outcome never disagree."""
    z0, c0 = z(margin), crit(margin)

    def upper_side(m: float) -> float:
        return z(m) + crit(m)

    def lower_side(m: float) -> float:
        return z(m) - crit(m)

    if lower_side(lo) <= 0:
        lower = -math.inf
    elif z0 > c0:
        lower = max(margin, _bisect(lower_side, margin, hi))
    else:
        lower = min(margin, _bisect(lower_side, lo, margin))
    if upper_side(hi) >= 0:
        upper = math.inf
    elif -z0 > c0:
        upper = min(margin, _bisect(upper_side, lo, margin))
    else:
        upper = max(margin, _bisect(upper_side, margin, hi))
    estimate = _bisect(z, lo, hi) if z(lo) > 0 > z(hi) else (lo if z(lo) <= 0 else hi)
    return estimate, lower, upper


# -- latencies: pairwise log-differences per stratum --


@dataclass(frozen=True)
class PairwiseDifferences:
    """The distribution of log(canary) - log(baseline) over all pairs of one stratum.

    Raw strata hold every difference; binned ones hold bucket-index differences (a lattice of
    width ``spacing``), between whose points the mid-rank count is interpolated linearly.
    """

    points: FloatArray
    weights: FloatArray
    n_baseline: int
    n_canary: int
    spacing: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cum", np.cumsum(self.weights))

    @classmethod
    def from_samples(
        cls,
        baseline: FloatArray,
        canary: FloatArray,
        baseline_counts: FloatArray | None = None,
        canary_counts: FloatArray | None = None,
    ) -> PairwiseDifferences:
        """All pairs of (weighted) positive values."""
        floor = 1e-12
        lc = np.log(np.maximum(canary, floor))
        lb = np.log(np.maximum(baseline, floor))
        d = np.subtract.outer(lc, lb).ravel()
        wc = np.ones(lc.size) if canary_counts is None else np.asarray(canary_counts, float)
        wb = np.ones(lb.size) if baseline_counts is None else np.asarray(baseline_counts, float)
        w = np.multiply.outer(wc, wb).ravel()
        order = np.argsort(d, kind="stable")
        return cls(d[order], w[order], round(float(wb.sum())), round(float(wc.sum())))

    @classmethod
    def from_histograms(cls, baseline: LogHistogram, canary: LogHistogram) -> PairwiseDifferences:
        c_nz, b_nz = np.flatnonzero(canary.counts), np.flatnonzero(baseline.counts)
        c0, c1, b0, b1 = int(c_nz[0]), int(c_nz[-1]), int(b_nz[0]), int(b_nz[-1])
        pairs = exact_correlation(canary.counts[c0 : c1 + 1], baseline.counts[b0 : b1 + 1][::-1])
        lg = canary.layout.log_gamma
        points = (np.arange(pairs.size) + (c0 - b1)).astype(np.float64) * lg
        return cls(points, pairs.astype(np.float64), baseline.total, canary.total, lg)

    @property
    def information(self) -> float:
        n1, n2 = self.n_canary, self.n_baseline
        return 12.0 * n1 * n2 / (n1 + n2 + 1) if n1 and n2 else 0.0

    @property
    def span(self) -> tuple[float, float]:
        pad = self.spacing or 1e-9
        return float(self.points[0]) - 2 * pad, float(self.points[-1]) + 2 * pad

    def _above(self, m: float) -> float:
        """Weight of pairs above m, ties counted half (m on the support itself)."""
        cum: FloatArray = self._cum  # type: ignore[attr-defined]
        total = float(cum[-1])
        right = int(np.searchsorted(self.points, m, side="right"))
        left = int(np.searchsorted(self.points, m, side="left"))
        below = float(cum[right - 1]) if right else 0.0
        at = below - (float(cum[left - 1]) if left else 0.0)
        return total - below + 0.5 * at

    def theta(self, m: float) -> float:
        """P(log canary - log baseline > m) - 1/2, mid-ranks."""
        if self.spacing:
            t = m / self.spacing
            k = math.floor(t)
            f = t - k
            above = (1 - f) * self._above(k * self.spacing) + f * self._above(
                (k + 1) * self.spacing
            )
        else:
            above = self._above(m)
        return above / float(self._cum[-1]) - 0.5  # type: ignore[attr-defined]


def shift_evidence(
    strata: Sequence[PairwiseDifferences],
    margin: float,
    *,
    alpha: float,
    tau: float,
    kind: Boundary = "sequential",
) -> Evidence:
    """Evidence that the pooled log-ratio canary/baseline exceeds ``margin`` (and its CS)."""
    strata = [s for s in strata if s.information > 0]
    if not strata:
        raise ValueError("no stratum has samples in both groups")
    info = sum(s.information for s in strata)
    root = math.sqrt(info)
    crit = critical_z(info, alpha, tau, kind)

    def z(m: float) -> float:
        return sum(s.information * s.theta(m) for s in strata) / root

    lo = min(s.span[0] for s in strata)
    hi = max(s.span[1] for s in strata)
    estimate, lower, upper = _interval(z, lambda _m: crit, margin, lo, hi)
    z0 = z(margin)
    return Evidence(
        estimate=estimate,
        lower=lower,
        upper=upper,
        z=z0,
        information=info,
        p_harm=one_sided_p(z0, info, tau, kind),
        p_within=one_sided_p(-z0, info, tau, kind),
        critical=crit,
        harm=z0 > crit,
        within=-z0 > crit,
    )


# -- error rates: counts per stratum --


@dataclass(frozen=True)
class RateStratum:
    errors_baseline: int
    n_baseline: int
    errors_canary: int
    n_canary: int


def _rate_z(strata: Sequence[RateStratum], m: float) -> tuple[float, float]:
    """(Z, information) for H0: p_canary - p_baseline = m, pooled over strata."""
    num = info = 0.0
    for s in strata:
        x1, n1, x2, n2 = s.errors_canary, s.n_canary, s.errors_baseline, s.n_baseline
        p1, p2 = restricted_mle(x1, n1, x2, n2, m)
        var = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
        if var <= 0:
            continue  # no errors anywhere and m = 0: this stratum says nothing at m
        num += (x1 / n1 - x2 / n2 - m) / var
        info += 1.0 / var
    return (num / math.sqrt(info), info) if info > 0 else (0.0, 0.0)


def exceedance_stratum(baseline: LogHistogram, canary: LogHistogram, q: float) -> RateStratum:
    """Each group's count above the q-quantile of both groups pooled, as a rate stratum.

    Pooling keeps the test exact under H0 (same distribution: every value is equally likely
    to be above, whichever group it is in); the bucket holding the quantile is left out of both.
    """
    stratum, _ = exceedance_counts(baseline.counts, canary.counts, q)
    return stratum


def exceedance_counts(
    baseline: np.ndarray, canary: np.ndarray, q: float
) -> tuple[RateStratum, int]:
    """``exceedance_stratum`` on per-bucket counts of one bucket layout (a Prometheus
    histogram's increases), with the index of the bucket holding the pooled q-quantile: the
    shares counted are those above that bucket's upper bound."""
    pooled = baseline + canary
    rank = max(1, math.ceil(q * float(pooled.sum())))
    at = int(np.searchsorted(np.cumsum(pooled), rank))
    stratum = RateStratum(
        int(baseline[at + 1 :].sum()),
        int(baseline.sum()),
        int(canary[at + 1 :].sum()),
        int(canary.sum()),
    )
    return stratum, at


def rate_evidence(
    strata: Sequence[RateStratum],
    margin: float,
    *,
    alpha: float,
    tau: float,
    kind: Boundary = "sequential",
) -> Evidence:
    """Evidence that the pooled error-rate difference canary - baseline exceeds ``margin``.

    The harm side is never allowed below the exact error-share test (each error falls on the
    canary with its traffic share when rates are equal: a beta-binomial mixture per stratum,
    whose product over the steps is an exact test martingale), because the score statistic's
    normal approximation runs liberal while errors are few.
    """
    strata = [s for s in strata if s.n_baseline > 0 and s.n_canary > 0]
    if not strata:
        raise ValueError("no stratum has requests in both groups")
    eps = 1e-9
    lo, hi = -1 + eps, 1 - eps

    def z(m: float) -> float:
        return _rate_z(strata, m)[0]

    def crit(m: float) -> float:
        return critical_z(_rate_z(strata, m)[1], alpha, tau, kind)

    estimate, lower, upper = _interval(z, crit, margin, lo, hi)
    z0, info = _rate_z(strata, margin)
    c0 = critical_z(info, alpha, tau, kind)
    p_harm = max(one_sided_p(z0, info, tau, kind), _exact_floor(strata, kind))
    harm = z0 > c0 and p_harm < alpha
    return Evidence(
        estimate=estimate,
        lower=lower if harm else min(lower, margin),  # the exact floor may hold harm back
        upper=upper,
        z=z0,
        information=info,
        p_harm=p_harm,
        p_within=one_sided_p(-z0, info, tau, kind) if info > 0 else 1.0,
        critical=c0,
        harm=harm,
        within=-z0 > c0,
    )


def _exact_floor(strata: Sequence[RateStratum], kind: Boundary) -> float:
    """p of 'errors fall on the canary no more than its traffic share' over all strata."""
    if kind == "fixed":
        return 0.0
    log_lr = 0.0
    extra = 0.0
    for s in strata:
        total = s.errors_baseline + s.errors_canary
        share = s.n_canary / (s.n_canary + s.n_baseline)
        log_lr += error_share_log_lr(s.errors_canary, total, share)
        extra += s.errors_canary - share * total
    if extra <= 0:
        return 1.0
    return min(1.0, math.exp(-log_lr))
