"""Does the realized canary share of traffic follow the share the weights ask for?

The gateway picks a target per request at random by weight, so the number of canary requests
among ``n`` attributed ones is Binomial(n, p) with p the written share. Traffic is "not
following" when the Wilson score interval for the realized share (z = 3.29, 99.9% two-sided)
lies wholly outside the band of odds within a factor ``ratio`` (2) of the written odds: for
p = 5% that is 2.6%..9.5%, for p = 50% 33%..67%. The band, not alpha, keeps false alarms away:
a gateway that follows sits at p, a factor 2 in odds from both edges, so even the 0.1% per
look is spent only on departures far beyond sampling noise (and a look that repeats every
interval cannot add up to a false alarm that is not far off). What it catches: weights
written to an object the gateway ignores (the realized share stays at the old one), a gateway
that kept a stale config, or a second writer. Below ``MIN_REQUESTS`` nothing is concluded: a
handful of requests can sit far out by chance and says little about a config.

Wilson's interval: (k + z²/2 ± z·sqrt(k(n-k)/n + z²/4)) / (n + z²); equal to scipy's
``binomtest(k, n).proportion_ci(0.999, "wilson")`` to 1e-12 (tests/unit/test_share.py).

Must not: read clocks or do I/O; decide what to do about it.
"""

from __future__ import annotations

import math

Z_999 = 3.2905267314919255
"""The standard normal's 0.9995 quantile: a 99.9% two-sided interval."""
MIN_REQUESTS = 100


def wilson_interval(k: int, n: int, z: float = Z_999) -> tuple[float, float]:
    """The Wilson score interval for a proportion, k successes out of n (n > 0)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError("need 0 <= k <= n and n > 0")
    z2 = z * z
    centre = k + z2 / 2
    half = z * math.sqrt(k * (n - k) / n + z2 / 4)
    return max(0.0, (centre - half) / (n + z2)), min(1.0, (centre + half) / (n + z2))


def follow_band(p: float, ratio: float = 2.0) -> tuple[float, float]:
    """Shares whose odds are within a factor ``ratio`` of the odds of ``p`` (0 < p < 1)."""
    odds = p / (1 - p)
    low, high = odds / ratio, odds * ratio
    return low / (1 + low), high / (1 + high)


def not_following(canary: int, total: int, written: float, ratio: float = 2.0) -> bool:
    """True when ``canary`` of ``total`` requests is shown outside ``follow_band(written)``."""
    if total < MIN_REQUESTS or not 0 < written < 1:
        return False
    lo, hi = wilson_interval(canary, total)
    band_lo, band_hi = follow_band(written, ratio)
    return hi < band_lo or lo > band_hi
