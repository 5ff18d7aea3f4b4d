"""Mergeable log-bucket histograms for latencies and token counts.

A value ``x > 0`` falls in bucket ``i = ceil(log(x) / log(gamma)) - offset``: bucket ``i`` covers
``(gamma**(i+offset-1), gamma**(i+offset)]``, so a bucket is at most ``gamma - 1`` wide relative to
its value (0.2% by default: fine enough that rank tests on buckets stay within 1e-3 of scipy's
p-value on raw data at 10^6 samples per group, still O(15,000) buckets from 1 us to 10^7).
Values at or below the lowest edge land in bucket 0, values above the top in the last bucket.
Counts are a dense int64 array, so two histograms with the same layout
merge by addition, exactly, in any order: partial windows from several consumers add up to the
histogram a single consumer would have built.

Must not: keep per-sample data, or depend on anything but numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BucketLayout:
    """Where the bucket edges are. Two histograms merge only if their layouts are equal."""

    gamma: float = 1.002
    lowest: float = 1e-6
    highest: float = 1e7

    def __post_init__(self) -> None:
        if not (1.0 < self.gamma <= 1.5):
            raise ValueError("gamma must be in (1, 1.5]")
        if not (0.0 < self.lowest < self.highest):
            raise ValueError("need 0 < lowest < highest")

    @property
    def log_gamma(self) -> float:
        return math.log(self.gamma)

    @property
    def offset(self) -> int:
        return math.ceil(math.log(self.lowest) / self.log_gamma)

    @property
    def size(self) -> int:
        return math.ceil(math.log(self.highest) / self.log_gamma) - self.offset + 1

    def index(self, values: FloatArray) -> IntArray:
        """Bucket index of each value (values must be finite and >= 0)."""
        with np.errstate(divide="ignore"):
            raw = np.ceil(np.log(values) / self.log_gamma)
        raw = np.nan_to_num(raw, neginf=float(self.offset))
        idx = raw.astype(np.int64) - self.offset
        return np.clip(idx, 0, self.size - 1)

    def representatives(self) -> FloatArray:
        """One value per bucket: the geometric middle of its edges (relative error <= 0.5%)."""
        upper = np.power(self.gamma, np.arange(self.size, dtype=np.float64) + self.offset)
        return upper / math.sqrt(self.gamma)


DEFAULT_LAYOUT = BucketLayout()


@dataclass
class LogHistogram:
    """Counts per bucket for one metric of one group."""

    layout: BucketLayout = DEFAULT_LAYOUT
    counts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.counts.size == 0:
            self.counts = np.zeros(self.layout.size, dtype=np.int64)
        elif self.counts.shape != (self.layout.size,):
            raise ValueError("counts do not match the layout")

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def add(self, values: FloatArray) -> None:
        """Fold a batch of values in (one bincount, not a loop)."""
        if values.size == 0:
            return
        self.counts += np.bincount(self.layout.index(values), minlength=self.layout.size)

    def merge(self, other: LogHistogram) -> None:
        if other.layout != self.layout:
            raise ValueError("cannot merge histograms with different layouts")
        self.counts += other.counts

    def copy(self) -> LogHistogram:
        return LogHistogram(self.layout, self.counts.copy())

    def quantile(self, q: float) -> float | None:
        """Representative value of the bucket holding the q-quantile, or None when empty."""
        n = self.total
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(self.layout.representatives()[i])


FFT_MIN_SIZE = 256
"""Below this many buckets on either side the direct convolution is as fast as the FFT."""


def fast_length(n: int) -> int:
    """The smallest 5-smooth number (2^a 3^b 5^c) >= n: an FFT length pocketfft is fast at.
    An awkward length (a large prime factor) is up to 8x slower at these sizes (measured:
    0.49 ms vs 0.065 ms for 2,711 points)."""
    best = 1 << max(0, n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def exact_correlation(a: IntArray, b: IntArray) -> IntArray:
    """Integer convolution of two count arrays (the counts of pairwise bucket differences).

    By FFT when both are large, at a fast (5-smooth) length; the rounded result is kept only if
    its total is the exact product of the totals and no count is negative, else (precision lost
    on huge counts) the direct O(n m) convolution is used. numpy's FFT, not scipy.signal:
    importing scipy.signal costs more start-up time than every judgment's FFTs together.
    """
    if min(a.size, b.size) >= FFT_MIN_SIZE:
        size = a.size + b.size - 1
        n = fast_length(size)
        spectrum = np.fft.rfft(a.astype(np.float64), n) * np.fft.rfft(b.astype(np.float64), n)
        out = np.rint(np.fft.irfft(spectrum, n)[:size]).astype(np.int64)
        if int(out.sum()) == int(a.sum()) * int(b.sum()) and out.min() >= 0:
            return out
    return np.asarray(np.convolve(a, b), dtype=np.int64)
