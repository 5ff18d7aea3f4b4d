"""The confidence sequences: against scipy, against the boundary they claim, and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analyzer.stats.confidence import (
    PairwiseDifferences,
    RateStratum,
    critical_z,
    exceedance_stratum,
    rate_evidence,
    shift_evidence,
)
from analyzer.stats.histogram import LogHistogram
from analyzer.stats.sequential import DEFAULT_TAU_RATE, DEFAULT_TAU_SHIFT, mixture_p

MARGIN = math.log(1.1)


def _samples(rng: np.random.Generator, n: int, factor: float = 1.0) -> np.ndarray:
    return 0.25 * factor * np.exp(0.5 * rng.standard_normal(n))


def test_z_at_the_margin_is_scipys_mann_whitney_z() -> None:
    rng = np.random.default_rng(3)
    b, c = _samples(rng, 400), _samples(rng, 90, 1.2)
    ev = shift_evidence(
        [PairwiseDifferences.from_samples(b, c)], MARGIN, alpha=0.01, tau=0.08, kind="fixed"
    )
    res = sps.mannwhitneyu(
        c, b * 1.1, alternative="greater", method="asymptotic", use_continuity=False
    )
    assert ev.p_harm == pytest.approx(res.pvalue, rel=1e-9)


def test_binned_strata_agree_with_raw_ones() -> None:
    rng = np.random.default_rng(4)
    b, c = _samples(rng, 3000), _samples(rng, 600, 1.15)
    hb, hc = LogHistogram(), LogHistogram()
    hb.add(b)
    hc.add(c)
    raw = shift_evidence([PairwiseDifferences.from_samples(b, c)], MARGIN, alpha=0.01, tau=0.08)
    binned = shift_evidence(
        [PairwiseDifferences.from_histograms(hb, hc)], MARGIN, alpha=0.01, tau=0.08
    )
    assert binned.z == pytest.approx(raw.z, abs=0.03)
    assert binned.estimate == pytest.approx(raw.estimate, abs=0.005)


def test_the_interval_is_where_z_meets_the_boundary_and_agrees_with_the_outcome() -> None:
    rng = np.random.default_rng(5)
    b, c = _samples(rng, 3000), _samples(rng, 800)
    pairs = PairwiseDifferences.from_samples(b, c)
    ev = shift_evidence([pairs], MARGIN, alpha=0.01, tau=0.08)
    crit = critical_z(ev.information, 0.01, 0.08, "sequential")
    root = math.sqrt(ev.information)
    for end, sign in ((ev.lower, -1), (ev.upper, 1)):
        z = pairs.information * pairs.theta(end) / root
        step = pairs.information / root / (3000 * 800)  # Z moves by pairs: one tie's worth
        assert z == pytest.approx(sign * -crit, abs=2 * step)
    assert ev.within == (ev.upper < MARGIN) and ev.harm == (ev.lower > MARGIN)
    assert ev.within and not ev.harm
    assert ev.p_within < 0.01 < ev.p_harm


def test_the_boundary_is_the_mixture_sprt_crossing_1_over_2_alpha() -> None:
    for info in (50.0, 800.0, 20_000.0):
        c = critical_z(info, 0.01, DEFAULT_TAU_SHIFT, "sequential")
        assert mixture_p(c, info, DEFAULT_TAU_SHIFT) == pytest.approx(0.01, rel=1e-6)


def test_strata_pool_without_the_bias_of_a_load_change() -> None:
    # Step 1 is fast for both groups, step 2 slow for both (a load change): the canary is
    # the same as the baseline within each step, but pooling raw values would call it slow.
    rng = np.random.default_rng(6)
    s1 = PairwiseDifferences.from_samples(_samples(rng, 900), _samples(rng, 100))
    s2 = PairwiseDifferences.from_samples(_samples(rng, 500, 2.0), _samples(rng, 500, 2.0))
    ev = shift_evidence([s1, s2], MARGIN, alpha=0.01, tau=0.08)
    assert abs(ev.estimate) < 0.05 and not ev.harm
    naive_b = np.concatenate([_samples(rng, 900), _samples(rng, 500, 2.0)])
    naive_c = np.concatenate([_samples(rng, 100), _samples(rng, 500, 2.0)])
    naive = shift_evidence(
        [PairwiseDifferences.from_samples(naive_b, naive_c)], MARGIN, alpha=0.01, tau=0.08
    )
    assert naive.harm  # what stratification prevents


@pytest.mark.slow
def test_healthy_canaries_are_rarely_shown_harmful_or_bad_ones_within() -> None:
    """Known truth, many looks: each side's error stays below alpha over a whole run."""
    rng = np.random.default_rng(7)
    alpha, runs = 0.05, 100
    false_harm = false_within = 0
    for _ in range(runs):
        for factor, kind in ((1.1, "harm"), (1.1, "within")):
            b, c = _samples(rng, 600), _samples(rng, 150, factor)
            for n in range(30, 151, 30):  # five looks as the canary grows
                ev = shift_evidence(
                    [PairwiseDifferences.from_samples(b[: n * 4], c[:n])],
                    MARGIN,
                    alpha=alpha,
                    tau=0.08,
                )
                if kind == "harm" and ev.harm:
                    false_harm += 1
                    break
                if kind == "within" and ev.within:
                    false_within += 1
                    break
    # At exactly the tolerance both errors are possible; each must stay within alpha.
    assert false_harm / runs <= alpha and false_within / runs <= alpha


def test_rates_at_zero_margin_match_the_two_proportion_score_test() -> None:
    s = RateStratum(errors_baseline=20, n_baseline=4000, errors_canary=18, n_canary=1000)
    ev = rate_evidence([s], 0.0, alpha=0.01, tau=DEFAULT_TAU_RATE, kind="fixed")
    p = (20 + 18) / 5000
    z = (18 / 1000 - 20 / 4000) / math.sqrt(p * (1 - p) * (1 / 1000 + 1 / 4000))
    assert ev.z == pytest.approx(z, rel=1e-9)


def test_few_errors_never_show_harm_below_the_exact_error_share_test() -> None:
    # 3 canary errors of 3 at a 10% share: the score statistic is huge, the exact share
    # test (0.1^3 under equal rates, mixed) is not below alpha: no rollback on that alone.
    s = RateStratum(errors_baseline=0, n_baseline=900, errors_canary=3, n_canary=100)
    ev = rate_evidence([s], 0.0, alpha=0.001, tau=DEFAULT_TAU_RATE)
    assert not ev.harm and ev.p_harm >= 0.001


def test_error_rates_within_tolerance_are_shown_within() -> None:
    s = RateStratum(errors_baseline=40, n_baseline=8000, errors_canary=11, n_canary=2000)
    ev = rate_evidence([s], 0.01, alpha=0.01, tau=DEFAULT_TAU_RATE)
    assert ev.within and ev.upper < 0.01 and ev.lower < ev.estimate < ev.upper


def test_exceedance_counts_each_group_above_the_pooled_quantile() -> None:
    rng = np.random.default_rng(8)
    b, c = _samples(rng, 9000), _samples(rng, 1000)
    c[:20] += 2.0  # 2% of the canary pushed into the tail
    hb, hc = LogHistogram(), LogHistogram()
    hb.add(b)
    hc.add(c)
    s = exceedance_stratum(hb, hc, 0.99)
    threshold = np.quantile(np.concatenate([b, c]), 0.99)
    assert s.n_baseline == 9000 and s.n_canary == 1000
    assert abs(s.errors_canary - int((c > threshold).sum())) <= 2
    assert abs(s.errors_baseline - int((b > threshold).sum())) <= 2
    assert s.errors_canary / 1000 > 2 * s.errors_baseline / 9000
