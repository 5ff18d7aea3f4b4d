"""The realized-share test: Wilson's interval against scipy, and simulations with known truth
(a gateway that follows the weights is never flagged; one that ignores them is)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyzer.stats.share import follow_band, not_following, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 1000), (1, 2), (480, 500)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.999, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_the_band_is_a_factor_two_in_odds() -> None:
    lo, hi = follow_band(0.5)
    assert (lo, hi) == pytest.approx((1 / 3, 2 / 3))
    lo, hi = follow_band(0.05)
    assert lo == pytest.approx(0.02564, abs=1e-5) and hi == pytest.approx(0.09524, abs=1e-5)


def test_a_gateway_that_follows_is_never_flagged_and_one_that_does_not_is() -> None:
    rng = np.random.default_rng(11)
    false_alarms = caught = 0
    for p in (0.05, 0.1, 0.25, 0.5):
        for n in (100, 200, 1000, 5000):
            for _ in range(200):
                false_alarms += not_following(int(rng.binomial(n, p)), n, p)
    assert false_alarms == 0
    # weights written to an object the gateway ignores: the canary keeps its old 50%, or 0%
    for written, real in ((0.1, 0.5), (0.25, 0.0), (0.05, 0.5), (0.5, 0.05)):
        for _ in range(100):
            caught += not_following(int(rng.binomial(1000, real)), 1000, written)
    assert caught == 400
    # too few requests to show anything: never flagged (3/3 at 10% alone would be)
    assert not not_following(0, 5, 0.25) and not not_following(99, 99, 0.1)
    assert not_following(100, 100, 0.1)
    assert not not_following(0, 0, 0.5) and not not_following(10, 10, 1.0)
