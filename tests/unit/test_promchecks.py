"""Prometheus histogram checks on bucket increases, against simulations with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from analyzer.analysis import promchecks
from analyzer.analysis.promchecks import QueryOutcome
from analyzer.config import PrometheusCheckSpec

# The endpoint picker's TTFT buckets (seconds), as Prometheus returns them with +Inf.
BOUNDS = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, math.inf])


def buckets(values: np.ndarray, bounds: np.ndarray = BOUNDS) -> QueryOutcome:
    """``sum by (le) (increase(..._bucket[...]))``: cumulative counts per ``le``."""
    per = np.bincount(np.searchsorted(bounds, values), minlength=bounds.size)
    le = ["+Inf" if math.isinf(b) else repr(float(b)) for b in bounds]
    return QueryOutcome(
        samples=tuple(({"le": x}, float(v)) for x, v in zip(le, np.cumsum(per), strict=True))
    )


def tail_check(**fields: object) -> PrometheusCheckSpec:
    spec = {"name": "p99", "source": "prometheus", "preset": "epp-ttft", "test": "exceedance"}
    return PrometheusCheckSpec.model_validate(
        {**spec, "quantile": 0.95, "tolerance": 0.015, **fields}
    )


def ttft(rng: np.random.Generator, n: int) -> np.ndarray:
    return 0.25 * np.exp(0.5 * rng.standard_normal(n))


def test_a_tail_only_regression_fails_exceedance_but_not_the_shift_check() -> None:
    rng = np.random.default_rng(3)
    base, can = ttft(rng, 20000), ttft(rng, 4000)
    can[:160] += 2.0  # 4% of the canary's requests 2 s slower: the median barely moves
    b, c = buckets(base), buckets(can)
    tail = promchecks.evaluate(tail_check(), [b, c], 200)
    assert tail.settle(tail.p_value or 1).status == "fail"
    assert tail.method == "sequential/exceedance-buckets" and tail.effect_kind == "difference"
    assert tail.ci is not None and tail.ci[0] > 0.015  # the interval that decides
    assert "tail share difference" in tail.settle(tail.p_value or 1).reason
    shift_spec = PrometheusCheckSpec(name="s", source="prometheus", preset="epp-ttft")
    shift = promchecks.evaluate(shift_spec, [b, c], 200)
    assert shift.settle(shift.p_value or 1).status != "fail"


def test_the_shares_are_those_above_the_bucket_holding_the_pooled_quantile() -> None:
    rng = np.random.default_rng(4)
    base, can = ttft(rng, 9000), ttft(rng, 1000)
    got = promchecks.evaluate(tail_check(mode="fixed"), [buckets(base), buckets(can)], 200)
    pooled = np.concatenate([base, can])
    q = np.quantile(pooled, 0.95)
    above = BOUNDS[np.searchsorted(BOUNDS, q)]  # the upper bound of the quantile's bucket
    share_c, share_b = (can > above).mean(), (base > above).mean()
    assert got.effect == pytest.approx(share_c - share_b, abs=1e-12)
    assert got.reason == f"tested: share above {above:g}"


def test_healthy_canaries_never_fail_and_mostly_pass() -> None:
    """100 A/A step windows of 20,000/6,000 requests: the +1.5-point tolerance is shown in
    most (the anytime-valid interval on a 5% share at 6,000 requests is about +-1 point)."""
    rng = np.random.default_rng(5)
    statuses = []
    for _ in range(100):
        b, c = buckets(ttft(rng, 20000)), buckets(ttft(rng, 6000))
        r = promchecks.evaluate(tail_check(), [b, c], 200)
        statuses.append(r.settle(r.p_value or 1).status)
    assert statuses.count("fail") == 0
    assert statuses.count("pass") >= 85


def test_an_unresolved_tail_is_inconclusive_never_a_pass() -> None:
    coarse = np.array([0.1, 0.2, math.inf])  # the p95 is past the last finite bucket
    rng = np.random.default_rng(6)
    b, c = buckets(ttft(rng, 5000), coarse), buckets(ttft(rng, 1000), coarse)
    r = promchecks.evaluate(tail_check(), [b, c], 200)
    assert r.status == "inconclusive" and "+Inf bucket" in r.reason
    assert r.settle(1.0).status == "inconclusive"
    other = buckets(ttft(rng, 1000))
    mixed = promchecks.evaluate(tail_check(), [b, other], 200)
    assert mixed.status == "inconclusive" and "buckets differ" in mixed.reason


def test_too_few_requests_are_not_ready() -> None:
    rng = np.random.default_rng(7)
    r = promchecks.evaluate(tail_check(), [buckets(ttft(rng, 5000)), buckets(ttft(rng, 150))], 200)
    assert not r.ready and r.settle(r.p_value or 1).status != "pass"
    assert "need 200 each" in r.reason


def test_the_rule_model_wants_a_quantile_for_exceedance_only() -> None:
    with pytest.raises(ValidationError, match="quantile is set exactly"):
        PrometheusCheckSpec.model_validate(
            {"name": "t", "source": "prometheus", "preset": "epp-e2e", "test": "exceedance"}
        )
    with pytest.raises(ValidationError, match="quantile is set exactly"):
        PrometheusCheckSpec.model_validate(
            {"name": "t", "source": "prometheus", "preset": "epp-ttft", "quantile": 0.99}
        )
    with pytest.raises(ValidationError, match="is a threshold check"):
        tail_check(preset="vllm-kv-cache")
    with pytest.raises(ValidationError, match="longer tail"):
        tail_check(direction="decrease")
    assert tail_check().resolved_test == "exceedance"
    assert "_bucket" in tail_check().resolved_query
