import itertools
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analyzer.rollout.weights import (
    WeightError,
    WeightLimits,
    canary_share,
    limits_for,
    split,
)

V1A1 = WeightLimits(allow_zero=True)
V1A2 = WeightLimits(allow_zero=False)


def test_source_document_example() -> None:
    original = [(f"sql-lora{s}", 10) for s in ("", "-1", "-2", "-3", "-4")] + [
        (f"tweet-summary{s}", 10) for s in ("", "-1", "-2", "-3", "-4")
    ]
    base = [n for n, _ in original[:5]]
    canary = [n for n, _ in original[5:]]
    out = dict(split(original, base, canary, 10, V1A1))
    assert {out[n] for n in base} == {18} and {out[n] for n in canary} == {2}


def test_v1alpha2_removes_zero_targets_and_v1alpha1_keeps_them() -> None:
    original = [("a", 5), ("b", 5)]
    assert split(original, ["a", "b"], ["c"], 100, V1A2) == [("c", 100)]
    assert split(original, ["a", "b"], ["c"], 100, V1A1) == [("a", 0), ("b", 0), ("c", 100)]
    assert limits_for("InferenceModel", "inference.networking.x-k8s.io/v1alpha1").allow_zero
    assert not limits_for("InferenceModel", "inference.networking.x-k8s.io/v1alpha2").allow_zero
    assert not limits_for("InferenceModelRewrite", "llm-d.ai/v1alpha2").allow_zero


def test_groups_must_match_the_object() -> None:
    with pytest.raises(WeightError, match="not targeted"):
        split([("a", 1)], ["a", "x"], ["c"], 10, V1A2)
    with pytest.raises(WeightError, match="neither group"):
        split([("a", 1), ("stray", 1)], ["a"], ["c"], 10, V1A2)
    with pytest.raises(WeightError, match="no traffic"):
        split([("a", 0), ("c", 5)], ["a"], ["c"], 10, V1A1)


names = st.lists(
    st.text("abcdefghij-", min_size=1, max_size=8), min_size=2, max_size=10, unique=True
)


@settings(max_examples=300, deadline=None)
@given(
    names,
    st.data(),
    st.integers(1, 100),
    st.booleans(),
)
def test_shares_are_exact_integral_and_within_limits(
    adapters: list[str], data: st.DataObject, percent: int, allow_zero: bool
) -> None:
    cut = data.draw(st.integers(1, len(adapters) - 1))
    baseline, canary = adapters[:cut], adapters[cut:]
    weights = data.draw(st.lists(st.integers(1, 1000), min_size=cut, max_size=cut))
    original = list(zip(baseline, weights, strict=True))
    limits = WeightLimits(allow_zero=allow_zero)
    try:
        out = split(original, baseline, canary, percent, limits)
    except WeightError as exc:
        assume("above" not in str(exc))
        raise
    assert canary_share(out, canary) == Fraction(percent, 100)
    assert len(out) <= 10
    assert all(isinstance(w, int) and 0 <= w <= 1_000_000 for _, w in out)
    if not allow_zero:
        assert all(w >= 1 for _, w in out)
    # Baseline adapters keep their original proportions.
    got = dict(out)
    if percent < 100:
        for (n1, w1), (n2, w2) in itertools.pairwise(original):
            assert Fraction(got[n1], got[n2]) == Fraction(w1, w2)
    # Canary adapters share equally.
    assert len({got[c] for c in canary}) == 1


def test_weights_without_values_split_equally() -> None:
    out = split([("a", None), ("b", None), ("c", None)], ["a", "b", "c"], ["x", "y"], 10, V1A2)
    assert out == [("a", 30), ("b", 30), ("c", 30), ("x", 5), ("y", 5)]
