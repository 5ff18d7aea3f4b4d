import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.stats.histogram import DEFAULT_LAYOUT, BucketLayout, LogHistogram


def test_bucket_relative_width_is_at_most_one_percent() -> None:
    layout = DEFAULT_LAYOUT
    reps = layout.representatives()
    upper = reps * math.sqrt(layout.gamma)
    lower = upper / layout.gamma
    assert np.all((upper - lower) / lower <= 0.01 + 1e-12)
    # Every value lies in the bucket whose edges surround it.
    rng = np.random.default_rng(3)
    values = rng.lognormal(-1.0, 2.0, 20_000)
    idx = layout.index(values)
    assert np.all(lower[idx] < values * (1 + 1e-12))
    assert np.all(values <= upper[idx] * (1 + 1e-12))
    assert np.all(np.abs(reps[idx] / values - 1) <= 0.005 + 1e-9)


def test_out_of_range_values_clamp_to_edge_buckets() -> None:
    layout = BucketLayout(lowest=1e-3, highest=10.0)
    idx = layout.index(np.array([0.0, 1e-9, 1e9]))
    assert idx.tolist() == [0, 0, layout.size - 1]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 1e4, allow_nan=False), max_size=200),
    st.lists(st.floats(0, 1e4, allow_nan=False), max_size=200),
)
def test_merge_is_exact(a: list[float], b: list[float]) -> None:
    ha, hb, hab = LogHistogram(), LogHistogram(), LogHistogram()
    ha.add(np.array(a))
    hb.add(np.array(b))
    hab.add(np.array(a + b))
    ha.merge(hb)
    assert np.array_equal(ha.counts, hab.counts)
    assert ha.total == len(a) + len(b)


def test_merge_refuses_other_layout() -> None:
    with pytest.raises(ValueError, match="layouts"):
        LogHistogram().merge(LogHistogram(BucketLayout(gamma=1.02)))


def test_quantile_within_bucket_error() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(-1.5, 0.6, 50_000)
    h = LogHistogram()
    h.add(values)
    for q in (0.5, 0.9, 0.99):
        got = h.quantile(q)
        assert got is not None
        assert abs(got / np.quantile(values, q) - 1) < 0.011
    assert LogHistogram().quantile(0.5) is None
