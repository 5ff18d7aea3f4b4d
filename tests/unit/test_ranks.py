"""The weighted-sample reference and the integer convolution, pinned to scipy and numpy."""

import numpy as np
import pytest
from scipy import stats

from analyzer.stats.histogram import exact_correlation, fast_length
from tests.ranks import weighted_mannwhitney


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


@pytest.mark.parametrize(("size", "scale"), [(10, 50), (300, 1_000), (5_000, 100_000)])
def test_exact_correlation_is_numpys_integer_convolution(size: int, scale: int) -> None:
    """By FFT for large inputs, yet exact: equal to the direct integer convolution."""
    rng = np.random.default_rng(size)
    a = rng.integers(0, scale, size).astype(np.int64)
    b = rng.integers(0, scale, size // 2 + 1).astype(np.int64)
    got = exact_correlation(a, b)
    assert got.dtype == np.int64
    assert np.array_equal(got, np.convolve(a, b))


def test_fft_lengths_are_the_smallest_5_smooth_ones() -> None:
    def smooth(n: int) -> bool:
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 3000):
        length = fast_length(n)
        assert length >= n and smooth(length)
        assert not any(smooth(k) for k in range(n, length))
    a = np.arange(1201, dtype=np.int64) % 7  # 1,201 + 1,511 - 1 = 2,711 points: a prime
    b = np.arange(1511, dtype=np.int64) % 11
    assert np.array_equal(exact_correlation(a, b), np.convolve(a, b))
