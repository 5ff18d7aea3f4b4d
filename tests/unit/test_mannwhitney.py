"""The rank test pinned to scipy, and its error rates checked by simulation (fixed seeds)."""

import numpy as np
import pytest
from scipy import stats

from analyzer.stats.histogram import LogHistogram
from analyzer.stats.mannwhitney import (
    compare_binned,
    compare_raw,
    hodges_lehmann_binned,
    hodges_lehmann_raw,
    weighted_mannwhitney,
)


def _hist(values: np.ndarray) -> LogHistogram:
    h = LogHistogram()
    h.add(values)
    return h


def _bin_labelled(values: np.ndarray) -> np.ndarray:
    h = LogHistogram()
    return h.layout.representatives()[h.layout.index(values)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("buckets", "direction"), [(0, "increase"), (10, "increase"), (5, "decrease")]
)
def test_binned_equals_scipy_on_bin_labelled_data(seed: int, buckets: int, direction: str) -> None:
    """Margins of whole buckets: the binned test is scipy's on bucket-labelled samples."""
    rng = np.random.default_rng(seed)
    n_b, n_c = int(rng.integers(50, 5000)), int(rng.integers(30, 3000))
    factor = float(rng.uniform(0.8, 1.4))
    baseline = rng.lognormal(-1.4, 0.5, n_b)
    canary = rng.lognormal(-1.4, 0.5, n_c) * factor
    gamma = LogHistogram().layout.gamma
    if direction == "increase":
        tolerance, shift, alternative = gamma**buckets - 1, buckets, "greater"
    else:
        tolerance, shift, alternative = 1 - gamma**-buckets, -buckets, "less"
    got = compare_binned(
        _hist(baseline), _hist(canary), tolerance=tolerance, alpha=0.01, direction=direction
    )  # type: ignore[arg-type]
    layout = LogHistogram().layout
    ref = stats.mannwhitneyu(
        layout.index(canary),
        layout.index(baseline) + shift,
        alternative=alternative,
        method="asymptotic",
    )
    assert got.u == pytest.approx(float(ref.statistic), abs=1e-6)
    assert abs(got.p_value - float(ref.pvalue)) < 1e-9
    assert got.n_baseline == n_b and got.n_canary == n_c


def test_weighted_handles_heavy_ties_like_scipy() -> None:
    rng = np.random.default_rng(11)
    x = rng.integers(0, 5, 400).astype(float)
    y = rng.integers(0, 6, 300).astype(float)
    xv, xc = np.unique(x, return_counts=True)
    yv, yc = np.unique(y, return_counts=True)
    for alt in ("greater", "less"):
        u, _, p = weighted_mannwhitney(xv, xc, yv, yc, alt)  # type: ignore[arg-type]
        ref = stats.mannwhitneyu(x, y, alternative=alt, method="asymptotic")
        assert u == pytest.approx(float(ref.statistic))
        assert abs(p - float(ref.pvalue)) < 1e-12


@pytest.mark.parametrize(
    ("n_baseline", "n_canary"), [(4000, 600), (100_000, 10_000), (1_000_000, 100_000)]
)
def test_binned_against_raw_scipy_bound(n_baseline: int, n_canary: int) -> None:
    """On raw (unbinned) data near the margin, |z_binned - z_scipy| <= 0.03 (stated bound)."""
    worst_z = worst_p = 0.0
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        baseline = rng.lognormal(-1.4, 0.5, n_baseline)
        canary = rng.lognormal(-1.4, 0.5, n_canary) * 1.1 * rng.uniform(1.0, 1.02)
        got = compare_binned(_hist(baseline), _hist(canary), tolerance=0.1, alpha=0.01)
        ref = stats.mannwhitneyu(canary, baseline * 1.1, alternative="greater", method="asymptotic")
        assert got.z is not None
        worst_z = max(worst_z, abs(got.z - float(stats.norm.isf(ref.pvalue))))
        worst_p = max(worst_p, abs(got.p_value - float(ref.pvalue)))
    assert worst_z <= 0.03, worst_z
    assert worst_p <= 0.01, worst_p


def test_compare_raw_is_scipy_and_exact_when_small() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.lognormal(0, 0.5, 40)
    canary = rng.lognormal(0.3, 0.5, 30)
    got = compare_raw(baseline, canary, tolerance=0.1, alpha=0.05)
    ref = stats.mannwhitneyu(canary, baseline * 1.1, alternative="greater", method="exact")
    assert got.method == "exact"
    assert got.p_value == pytest.approx(float(ref.pvalue), abs=1e-12)
    big = compare_raw(
        rng.lognormal(0, 0.5, 900), rng.lognormal(0, 0.5, 700), tolerance=0.0, alpha=0.05
    )
    assert big.method == "asymptotic" and big.z is not None


def test_hodges_lehmann_raw_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    b = rng.lognormal(0, 0.4, 60)
    c = rng.lognormal(0.2, 0.4, 50)
    ratio, (lo, hi) = hodges_lehmann_raw(b, c, 0.025) or (0.0, (0.0, 0.0))
    diffs = np.sort((np.log(c)[:, None] - np.log(b)[None, :]).ravel())
    assert ratio == pytest.approx(float(np.exp(np.median(diffs))))
    assert lo < ratio < hi
    assert lo < np.exp(0.2) < hi


def test_hodges_lehmann_binned_within_two_buckets_of_raw() -> None:
    rng = np.random.default_rng(8)
    b = rng.lognormal(-1, 0.5, 700)
    c = rng.lognormal(-1, 0.5, 500) * 1.25
    raw = hodges_lehmann_raw(b, c, 0.01)
    binned = hodges_lehmann_binned(_hist(b), _hist(c), 0.01)
    assert raw is not None and binned is not None
    assert binned[0] == pytest.approx(raw[0], rel=0.021)
    assert binned[1][0] == pytest.approx(raw[1][0], rel=0.021)
    assert binned[1][1] == pytest.approx(raw[1][1], rel=0.021)


def test_ci_covers_true_ratio_at_nominal_rate() -> None:
    """Two-sided (1 - 2*alpha) HL interval: 90% nominal coverage of a known 1.2x shift."""
    covered = 0
    runs = 300
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        b = rng.lognormal(-1.4, 0.5, 800)
        c = rng.lognormal(-1.4, 0.5, 300) * 1.2
        res = compare_binned(_hist(b), _hist(c), tolerance=0.0, alpha=0.05)
        assert res.ci is not None
        covered += res.ci[0] <= 1.2 <= res.ci[1]
    assert 0.85 <= covered / runs <= 0.96


def test_size_and_power_by_simulation() -> None:
    """A/A and a canary exactly at the margin are failed at most alpha of the time; 40% slower
    is caught nearly always. Known truth, fixed seeds."""
    alpha = 0.05
    runs = 400
    aa = at_margin = slow = 0
    for seed in range(runs):
        rng = np.random.default_rng(10_000 + seed)
        b = rng.lognormal(-1.4, 0.6, 2000)
        c = rng.lognormal(-1.4, 0.6, 250)
        aa += compare_binned(_hist(b), _hist(c), tolerance=0.0, alpha=alpha).p_value < alpha
        at_margin += (
            compare_binned(_hist(b), _hist(c * 1.1), tolerance=0.1, alpha=alpha).p_value < alpha
        )
        slow += compare_binned(_hist(b), _hist(c * 1.4), tolerance=0.1, alpha=alpha).p_value < alpha
    # Binomial(400, 0.05): mean 20, sd 4.4; allow 3 sd.
    assert aa / runs <= alpha + 3 * (alpha * (1 - alpha) / runs) ** 0.5
    assert at_margin / runs <= alpha + 3 * (alpha * (1 - alpha) / runs) ** 0.5
    assert slow / runs >= 0.99


def test_rejects_empty_and_bad_tolerance() -> None:
    with pytest.raises(ValueError):
        compare_binned(LogHistogram(), _hist(np.ones(3)), tolerance=0.1, alpha=0.01)
    with pytest.raises(ValueError):
        compare_raw(np.ones(3), np.ones(3), tolerance=-0.1, alpha=0.01)
    with pytest.raises(ValueError):
        compare_raw(np.ones(3), np.ones(3), tolerance=1.0, alpha=0.01, direction="decrease")
