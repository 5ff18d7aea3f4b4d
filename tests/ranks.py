"""A reference Mann-Whitney U on weighted samples, for tests that pin the product to scipy.

Prometheus histograms are weighted samples (bucket bound, count); expanding them for scipy
would take millions of values, so tests compare with this one, itself pinned to scipy on
expanded samples in tests/unit/test_ranks.py.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import special

from analyzer.stats.histogram import FloatArray, IntArray

Alternative = Literal["greater", "less"]


def weighted_mannwhitney(
    x_values: FloatArray,
    x_counts: IntArray | FloatArray,
    y_values: FloatArray,
    y_counts: IntArray | FloatArray,
    alternative: Alternative,
) -> tuple[float, float, float]:
    """U of x, z and one-sided p from weighted samples (value, multiplicity).

    Identical to ``scipy.stats.mannwhitneyu(x, y, alternative, method="asymptotic")`` on the
    expanded samples: midranks for ties, tie-corrected variance, continuity correction 0.5.
    """
    n1 = round(float(x_counts.sum()))
    n2 = round(float(y_counts.sum()))
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    values = np.concatenate([x_values, y_values])
    uniq, inverse = np.unique(values, return_inverse=True)
    cx = np.bincount(inverse[: x_values.size], weights=x_counts, minlength=uniq.size)
    cy = np.bincount(inverse[x_values.size :], weights=y_counts, minlength=uniq.size)
    t = cx + cy
    before = np.cumsum(t) - t
    midrank = before + (t + 1.0) / 2.0
    r1 = float(np.dot(cx, midrank))
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie_term = float(np.sum(t**3 - t))
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    mu = n1 * n2 / 2.0
    if var <= 0:
        return u1, 0.0, 1.0
    sd = math.sqrt(var)
    if alternative == "greater":
        z = (u1 - mu - 0.5) / sd
        p = float(special.ndtr(-z))
    else:
        z = (u1 - mu + 0.5) / sd
        p = float(special.ndtr(z))
    return u1, z, p
