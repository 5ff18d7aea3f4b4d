"""Sequential tests on small simulated cases with known truth (fixed seeds, fast)."""

import math

import numpy as np
import pytest

from analyzer.stats.histogram import LogHistogram
from analyzer.stats.mannwhitney import compare_binned
from analyzer.stats.rates import compare_rates
from analyzer.stats.sequential import (
    error_share_p,
    mixture_p,
    sequential_rate_p,
    sequential_shift_p,
)

LOOKS = range(100, 2001, 100)  # canary samples at each look; baseline gets 9x as many


def _run_latency(seed: int, factor: float, tolerance: float) -> tuple[int | None, int | None]:
    """First look at which the sequential and the fixed-horizon tests reject (alpha 0.05)."""
    rng = np.random.default_rng(seed)
    base, can = LogHistogram(), LogHistogram()
    seq_at = fixed_at = None
    done = 0
    running = 1.0
    for n in LOOKS:
        base.add(rng.lognormal(-1.4, 0.5, 9 * (n - done)))
        can.add(rng.lognormal(-1.4, 0.5, n - done) * factor)
        done = n
        res = compare_binned(base, can, tolerance=tolerance, alpha=0.05)
        running = min(running, sequential_shift_p(res))
        if seq_at is None and running < 0.05:
            seq_at = n
        if fixed_at is None and res.p_value < 0.05:
            fixed_at = n
    return seq_at, fixed_at


def test_mixture_p_basics() -> None:
    assert mixture_p(-3.0, 1000.0, 0.05) == 1.0
    assert mixture_p(3.0, 0.0, 0.05) == 1.0
    # For a fixed z, more information means a smaller mixture ratio (Occam factor) ...
    assert mixture_p(3.0, 1e6, 0.05) > mixture_p(3.0, 1e3, 0.05)
    # ... and it is always more demanding than the fixed-horizon one-sided p.
    for z in (1.0, 2.0, 3.0, 4.0):
        assert mixture_p(z, 5000.0, 0.05) >= 0.5 * math.erfc(z / math.sqrt(2))


def test_latency_aa_under_continuous_monitoring_keeps_alpha() -> None:
    runs = 300
    seq = fixed = 0
    for seed in range(runs):
        s, f = _run_latency(seed, 1.0, 0.0)
        seq += s is not None
        fixed += f is not None
    # 20 looks: the fixed-horizon test is inflated well past alpha; the sequential one is not.
    assert seq / runs <= 0.05
    assert fixed / runs >= 0.12
    assert fixed > 3 * max(seq, 1)


def test_latency_slow_canary_is_caught() -> None:
    caught = [_run_latency(1000 + s, 1.3, 0.1)[0] for s in range(60)]
    assert sum(c is not None for c in caught) >= 57
    assert np.median([c for c in caught if c is not None]) <= 1000


def test_error_rate_sequential_keeps_alpha_and_catches_six_fold() -> None:
    rng = np.random.default_rng(7)
    false_alarms = 0
    runs = 300
    for _ in range(runs):
        running = 1.0
        xb = xc = nb = nc = 0
        for _ in range(20):
            nb += 900
            nc += 100
            xb += int(rng.binomial(900, 0.005))
            xc += int(rng.binomial(100, 0.005))
            r = compare_rates(xb, nb, xc, nc, tolerance=0.0, alpha=0.05)
            running = min(running, sequential_rate_p(r, 0.0))
        false_alarms += running < 0.05
    assert false_alarms / runs <= 0.05
    caught = 0
    for _ in range(100):
        xb = int(rng.binomial(9000, 0.005))
        xc = int(rng.binomial(1000, 0.03))
        r = compare_rates(xb, 9000, xc, 1000, tolerance=0.0, alpha=0.01)
        caught += sequential_rate_p(r, 0.0) < 0.01
    assert caught >= 90


def test_error_share_p_is_exact_under_the_null() -> None:
    """Errors fall on the canary at its traffic share: crossing 1/alpha happens <= alpha."""
    rng = np.random.default_rng(3)
    runs, alpha, hits = 2000, 0.05, 0
    for _ in range(runs):
        on_canary = rng.random(200) < 0.1
        xs = np.cumsum(on_canary)
        hits += any(error_share_p(int(xs[i]), i + 1, 0.1) < alpha for i in range(200))
    assert hits / runs <= alpha
    assert error_share_p(30, 40, 0.1) < 1e-10
    assert error_share_p(1, 40, 0.1) == 1.0


def test_rate_p_is_exact_at_small_counts() -> None:
    r = compare_rates(0, 50, 2, 5, tolerance=0.0, alpha=0.01)
    assert sequential_rate_p(r, 0.0) >= error_share_p(2, 2, 5 / 55)
    assert sequential_rate_p(compare_rates(0, 100, 0, 100, tolerance=0.0, alpha=0.01), 0.0) == 1


@pytest.mark.parametrize("tau", [0.02, 0.05, 0.1])
def test_tau_changes_speed_not_validity(tau: float) -> None:
    p = sequential_shift_p(compare_binned(*_hists(2000, 1.0, 3), tolerance=0.0, alpha=0.05), tau)
    assert 0 < p <= 1


def _hists(n: int, factor: float, seed: int) -> tuple[LogHistogram, LogHistogram]:
    rng = np.random.default_rng(seed)
    b, c = LogHistogram(), LogHistogram()
    b.add(rng.lognormal(0, 0.5, 9 * n))
    c.add(rng.lognormal(0, 0.5, n) * factor)
    return b, c
