import math

import numpy as np
import pytest
from scipy import stats

from analyzer.stats.corrections import adjust
from analyzer.stats.rates import (
    compare_rates,
    farrington_manning,
    newcombe_interval,
    restricted_mle,
    restricted_mle_numeric,
)


def test_fisher_matches_scipy_when_no_tolerance() -> None:
    got = compare_rates(5, 1000, 6, 100, tolerance=0.0, alpha=0.01)
    ref = stats.fisher_exact([[6, 94], [5, 995]], alternative="greater")
    assert got.method == "fisher"
    assert got.p_value == pytest.approx(float(ref.pvalue), abs=1e-12)


def test_zero_errors_do_not_crash_or_pass_a_bad_canary() -> None:
    clean = compare_rates(0, 1000, 0, 100, tolerance=0.01, alpha=0.01)
    assert clean.p_value == pytest.approx(1.0)
    bad = compare_rates(0, 1000, 30, 100, tolerance=0.01, alpha=0.01)
    assert bad.p_value < 1e-10
    assert bad.ci[0] > 0.01
    tiny = compare_rates(0, 5, 3, 3, tolerance=0.0, alpha=0.01)
    assert 0 < tiny.p_value <= 1


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"), [(12, 300, 20, 3000), (40, 500, 10, 2000), (3, 100, 9, 900)]
)
def test_score_test_matches_closed_form(x1: int, n1: int, x2: int, n2: int) -> None:
    """The score z from the closed-form restricted MLE equals the one from numerical ML."""
    z, _ = farrington_manning(x1, n1, x2, n2, 0.01)
    p1, p2 = restricted_mle_numeric(x1, n1, x2, n2, 0.01)
    var = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    assert z == pytest.approx((x1 / n1 - x2 / n2 - 0.01) / math.sqrt(var), abs=1e-5)


@pytest.mark.parametrize(("n_canary", "p_base"), [(30, 0.01), (100, 0.005), (400, 0.02)])
def test_size_at_the_margin_by_simulation(n_canary: int, p_base: float) -> None:
    """Canary exactly at baseline + tolerance: failed at most alpha of the time (small counts)."""
    alpha, tol, runs = 0.05, 0.01, 2000
    rng = np.random.default_rng(n_canary)
    n_base = 10 * n_canary
    xb = rng.binomial(n_base, p_base, runs)
    xc = rng.binomial(n_canary, p_base + tol, runs)
    rejections = sum(
        compare_rates(int(b), n_base, int(c), n_canary, tolerance=tol, alpha=alpha).p_value < alpha
        for b, c in zip(xb, xc, strict=True)
    )
    assert rejections / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_power_against_six_fold_errors() -> None:
    rng = np.random.default_rng(1)
    runs = 300
    caught = sum(
        compare_rates(
            int(rng.binomial(9000, 0.005)),
            9000,
            int(rng.binomial(1000, 0.03)),
            1000,
            tolerance=0.005,
            alpha=0.01,
        ).p_value
        < 0.01
        for _ in range(runs)
    )
    assert caught / runs >= 0.95


def test_newcombe_interval_coverage() -> None:
    rng = np.random.default_rng(9)
    runs, covered = 1000, 0
    for _ in range(runs):
        xc, xb = int(rng.binomial(200, 0.04)), int(rng.binomial(2000, 0.02))
        lo, hi = newcombe_interval(xc, 200, xb, 2000, 0.025)
        covered += lo <= 0.02 <= hi
    assert covered / runs >= 0.93


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        compare_rates(5, 0, 1, 10, tolerance=0.0, alpha=0.01)
    with pytest.raises(ValueError):
        compare_rates(11, 10, 1, 10, tolerance=0.0, alpha=0.01)


def test_holm_and_bonferroni() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01*4, 0.03*3, 0.04*2, 0.5*1 with running max.
    assert adjust(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust(p, "none") == p
    assert adjust([0.2], "holm") == [0.2]


def test_closed_form_restricted_mle_matches_numeric_maximisation() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n1, n2 = int(rng.integers(1, 2000)), int(rng.integers(1, 20000))
        x1, x2 = int(rng.binomial(n1, 0.02)), int(rng.binomial(n2, 0.01))
        d = float(rng.choice([0.0, 0.005, 0.01, 0.05]))
        closed, numeric = (
            restricted_mle(x1, n1, x2, n2, d),
            restricted_mle_numeric(x1, n1, x2, n2, d),
        )
        assert closed == pytest.approx(numeric, abs=1e-6)
