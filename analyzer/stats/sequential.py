"""Anytime-valid (sequential) tests: judge as often as you like, keep the error rate you chose.

A fixed-horizon test checked every interval rejects a healthy canary far more often than its
alpha says (with a look every 250 requests up to 20,000, a Mann-Whitney at 0.05 rejects A/A
about 30% of the time). Here each test statistic becomes a normal-mixture sequential
probability ratio (mSPRT, Robbins 1970; Johari et al. 2017):

    Lambda_n = (1 + tau^2 I_n)^(-1/2) * exp( tau^2 I_n z_n^2 / (2 (1 + tau^2 I_n)) )

where z_n is the standardized statistic at the look and I_n its Fisher information (1/variance
of the effect estimate). Under H0 (effect <= 0), Lambda_n is asymptotically a nonnegative
martingale, so by Ville's inequality P(sup_n Lambda_n >= 1/a) <= a: rejecting when Lambda_n
crosses 1/(2 alpha) on the side of a worse canary keeps the one-sided error <= alpha over any
number of looks (the mixture is symmetric, so each side gets half). The always-valid p-value
is min(1, 1 / (2 Lambda_n)), and its running minimum stays valid.

The guarantee is asymptotic: it holds as the normal approximation of the statistic does (the
Mann-Whitney U and the score statistic of a difference of proportions are asymptotically
Gaussian with independent increments when both groups grow at a fixed ratio, as they do within
a step). For error counts, whose normal approximation is poor while errors are few, the rate
test is also never allowed below an exact one (Netflix-style counting process): given the
traffic split, each error falls on the canary with probability rho = n_canary / n_total when
the rates are equal, so the canary's share of the errors is a Bernoulli sequence, and a
beta-binomial mixture ratio over it is an exact martingale; it is crossed at 1/alpha.

``tau`` is the scale of effects the test is tuned to find fastest, in the units of the effect:
P(canary > baseline) - 1/2 for latencies, a difference of proportions for errors.

Must not: read clocks or keep state; the running minimum is kept by the caller.
"""

from __future__ import annotations

import math

DEFAULT_TAU_SHIFT = 0.08
"""A canary that loses 58/42 of the comparisons to the (scaled) baseline: about 1.2x TTFT at
sigma 0.5, the effect an SRE most wants caught fast."""
DEFAULT_TAU_RATE = 0.01
"""One percentage point of extra errors."""


def mixture_p(z: float, information: float, tau: float) -> float:
    """One-sided always-valid p-value at this look (small when z is large and positive)."""
    if not (z > 0 and information > 0 and tau > 0):
        return 1.0
    r = tau * tau * information
    log_lambda = -0.5 * math.log1p(r) + r * z * z / (2.0 * (1.0 + r))
    return min(1.0, 0.5 * math.exp(-log_lambda))


ERROR_SHARE_PRIOR = 10.0
"""Concentration of the beta mixture over the canary's share of errors (prior sd ~ 0.09)."""


def error_share_log_lr(errors_canary: int, errors_total: int, share: float) -> float:
    """log of the beta-binomial mixture ratio over the canary's share of the errors."""
    if errors_total == 0 or not 0 < share < 1:
        return 0.0
    a, b = share * ERROR_SHARE_PRIOR, (1 - share) * ERROR_SHARE_PRIOR
    x, n = errors_canary, errors_total
    log_mix = (
        math.lgamma(x + a)
        + math.lgamma(n - x + b)
        - math.lgamma(n + a + b)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    log_null = x * math.log(share) + (n - x) * math.log1p(-share)
    return log_mix - log_null
