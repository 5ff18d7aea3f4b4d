"""The mixture p-value and the exact error-share martingale, with known truth (fixed seeds)."""

import math

import numpy as np

from analyzer.stats.sequential import error_share_log_lr, mixture_p


def test_mixture_p_basics() -> None:
    assert mixture_p(-3.0, 1000.0, 0.05) == 1.0
    assert mixture_p(3.0, 0.0, 0.05) == 1.0
    # For a fixed z, more information means a smaller mixture ratio (Occam factor) ...
    assert mixture_p(3.0, 1e6, 0.05) > mixture_p(3.0, 1e3, 0.05)
    # ... and it is always more demanding than the fixed-horizon one-sided p.
    for z in (1.0, 2.0, 3.0, 4.0):
        assert mixture_p(z, 5000.0, 0.05) >= 0.5 * math.erfc(z / math.sqrt(2))


def test_error_share_ratio_is_exact_under_the_null() -> None:
    """Errors fall on the canary at its traffic share: the ratio crosses 1/alpha <= alpha
    of the time over 200 looks (Ville's inequality, exactly, at small counts)."""
    rng = np.random.default_rng(3)
    runs, alpha, hits = 2000, 0.05, 0
    for _ in range(runs):
        xs = np.cumsum(rng.random(200) < 0.1)
        hits += any(
            error_share_log_lr(int(xs[i]), i + 1, 0.1) > -math.log(alpha) for i in range(200)
        )
    assert hits / runs <= alpha
    assert error_share_log_lr(30, 40, 0.1) > -math.log(1e-10)
    assert error_share_log_lr(4, 40, 0.1) < 0  # exactly the share: no evidence either way
    assert error_share_log_lr(0, 0, 0.1) == 0.0
