"""Prometheus query results -> CheckResult. Pure: the querying is sources/prometheus.py.

Four kinds:
- threshold: one value against min/max (a pool-health guard);
- relative: the same query for the canary and the baseline group, compared as a ratio or a
  difference against the tolerance;
- mann-whitney: bucket increases of a Prometheus histogram per group (cumulative ``le`` counts),
  each bucket a tie group at its upper bound, with the access-log checks' confidence sequence
  and three outcomes (fail: shown beyond the tolerance; pass: shown within; else inconclusive);
- exceedance: the same buckets, each group's share of requests above the bucket holding the
  pooled quantile (a p95/p99 regression), with the error-rate check's confidence sequence.
Threshold and relative checks compare measured values, not samples: they pass or fail on the
value itself (a guard), with no interval.
A query that failed, returned nothing, returned NaN or several series where one was expected
is a distinct, explained ``inconclusive`` or ``nodata``: never a pass.

Must not: do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from analyzer.analysis.checks import SEQUENTIAL_MIN_SAMPLES, CheckResult, with_evidence
from analyzer.config import PrometheusCheckSpec
from analyzer.stats.confidence import (
    PairwiseDifferences,
    exceedance_counts,
    rate_evidence,
    shift_evidence,
)
from analyzer.stats.sequential import DEFAULT_TAU_RATE, DEFAULT_TAU_SHIFT


@dataclass(frozen=True)
class QueryOutcome:
    """What one query returned: samples as (labels, value), or why there are none."""

    samples: tuple[tuple[Mapping[str, str], float], ...] = ()
    error: str | None = None
    unreachable: bool = False
    unasked: bool = False
    """No query was sent (no Prometheus configured, or none asked this judgment)."""


def _base(
    check: PrometheusCheckSpec, kind: Literal["ratio", "difference", "value"] = "ratio"
) -> CheckResult:
    return CheckResult(
        name=check.name,
        metric=f"prometheus:{check.resolved_test}",
        status="nodata",
        n_baseline=0,
        n_canary=0,
        effect_kind=kind,
        alpha=check.alpha,
        tolerance=check.tolerance,
        dry_run=check.dry_run,
    )


def _problem(check: PrometheusCheckSpec, out: QueryOutcome, group: str) -> CheckResult | None:
    """The explained non-result for a query that gave no usable answer, else None."""
    base = _base(check)
    where = f" ({group})" if group else ""
    if out.unasked:
        return _with(base, "nodata", f"no data{where}: {out.error}")
    if out.unreachable:
        return _with(base, "nodata", f"Prometheus unreachable{where}: {out.error}")
    if out.error is not None:
        return _with(base, "inconclusive", f"query failed{where}: {out.error}")
    if not out.samples:
        return _with(base, "nodata", f"query returned no series{where}")
    return None


def _with(result: CheckResult, status: str, reason: str) -> CheckResult:
    return replace(result, status=status, reason=reason)  # type: ignore[arg-type]


def _scalar(check: PrometheusCheckSpec, out: QueryOutcome, group: str) -> float | CheckResult:
    problem = _problem(check, out, group)
    if problem is not None:
        return problem
    if len(out.samples) > 1:
        return _with(
            _base(check),
            "inconclusive",
            f"{len(out.samples)} series where one was expected ({group or 'query'}); "
            "aggregate it, e.g. with sum() or max()",
        )
    value = out.samples[0][1]
    if math.isnan(value):
        return _with(_base(check), "nodata", f"the query is NaN ({group or 'query'}): no traffic?")
    return value


def threshold(check: PrometheusCheckSpec, out: QueryOutcome) -> CheckResult:
    value = _scalar(check, out, "")
    if isinstance(value, CheckResult):
        return value
    result = _base(check, "value")
    if check.max is not None and value > check.max:
        return replace(
            result, status="fail", effect=value, reason=f"{value:.4g} above max {check.max:g}"
        )
    if check.min is not None and value < check.min:
        return replace(
            result, status="fail", effect=value, reason=f"{value:.4g} below min {check.min:g}"
        )
    return replace(result, status="pass", effect=value, reason=f"{value:.4g} within bounds")


def relative(
    check: PrometheusCheckSpec, baseline: QueryOutcome, canary: QueryOutcome
) -> CheckResult:
    b = _scalar(check, baseline, "baseline")
    if isinstance(b, CheckResult):
        return b
    c = _scalar(check, canary, "canary")
    if isinstance(c, CheckResult):
        return c
    compare = check.resolved_compare
    sign = 1.0 if check.direction == "increase" else -1.0
    if compare == "difference":
        effect = c - b
        failed = sign * effect > check.tolerance
        shown = f"canary {c:.4g} - baseline {b:.4g} = {effect:+.4g}"
        kind: Literal["ratio", "difference", "value"] = "difference"
    else:
        if b == 0:
            if c == 0:
                return replace(
                    _base(check), status="pass", effect=1.0, reason="canary and baseline both 0"
                )
            return replace(
                _base(check),
                status="inconclusive",
                reason=f"baseline is 0, canary {c:.4g}: a ratio is undefined; "
                "use compare: difference",
            )
        effect = c / b
        failed = (effect > 1 + check.tolerance) if sign > 0 else (effect < 1 - check.tolerance)
        shown = f"canary/baseline {c:.4g}/{b:.4g} = {effect:.3f}"
        kind = "ratio"
    return replace(
        _base(check, kind),
        status="fail" if failed else "pass",
        effect=effect,
        reason=f"{shown} {'exceeds' if failed else 'within'} tolerance {check.tolerance:g}",
    )


def bucket_counts(out: QueryOutcome) -> tuple[np.ndarray, np.ndarray] | str:
    """(upper bounds, per-bucket counts) from cumulative ``le`` series, or why not."""
    by_le: dict[float, float] = {}
    for labels, value in out.samples:
        le = labels.get("le")
        if le is None:
            return "series without an le label: aggregate with sum by (le)"
        try:
            bound = float(le)
        except ValueError:
            return f"unparseable le {le!r}"
        if bound in by_le:
            return "several series per le: aggregate with sum by (le)"
        by_le[bound] = value
    bounds = np.array(sorted(by_le))
    cumulative = np.array([by_le[b] for b in bounds])
    if np.isnan(cumulative).any():
        return "NaN bucket counts"
    counts = np.diff(np.concatenate([[0.0], cumulative]))
    # increase() extrapolates, so counts are not integers and may dip a little below zero.
    counts = np.clip(np.rint(counts), 0, None)
    return bounds, counts


@dataclass(frozen=True)
class _Buckets:
    """Both groups' bucket increases, and the result they start from."""

    baseline: tuple[np.ndarray, np.ndarray]
    canary: tuple[np.ndarray, np.ndarray]
    result: CheckResult
    few: str


def _buckets(
    check: PrometheusCheckSpec,
    baseline: QueryOutcome,
    canary: QueryOutcome,
    min_samples: int,
    kind: Literal["ratio", "difference"],
    bound: float,
) -> _Buckets | CheckResult:
    """Both groups' buckets with enough requests to test, or the explained non-result."""
    for group, out in (("baseline", baseline), ("canary", canary)):
        problem = _problem(check, out, group)
        if problem is not None:
            return problem
    parsed_b, parsed_c = bucket_counts(baseline), bucket_counts(canary)
    for group, parsed in (("baseline", parsed_b), ("canary", parsed_c)):
        if isinstance(parsed, str):
            return _with(_base(check), "inconclusive", f"{group}: {parsed}")
    assert not isinstance(parsed_b, str) and not isinstance(parsed_c, str)
    nb, nc = int(parsed_b[1].sum()), int(parsed_c[1].sum())
    need = check.min_samples or min_samples
    result = replace(
        _base(check, kind), n_baseline=nb, n_canary=nc, bound=bound, ready=nb >= need and nc >= need
    )
    if nb == 0 or nc == 0:
        empty = "baseline" if nb == 0 else "canary"
        return replace(result, reason=f"no requests in the {empty} buckets yet")
    few = f"too few samples to pass: baseline {nb}, canary {nc}, need {need} each"
    if min(nb, nc) < (SEQUENTIAL_MIN_SAMPLES if check.mode == "sequential" else need):
        return replace(result, status="inconclusive", reason=few)
    return _Buckets(parsed_b, parsed_c, result, few)


def histogram(
    check: PrometheusCheckSpec,
    baseline: QueryOutcome,
    canary: QueryOutcome,
    min_samples: int,
) -> CheckResult:
    """The step's bucket increases per group, with the access-log checks' three outcomes."""
    decrease = check.direction == "decrease"
    bound = 1 - check.tolerance if decrease else 1 + check.tolerance
    got = _buckets(check, baseline, canary, min_samples, "ratio", bound)
    if isinstance(got, CheckResult):
        return got
    (bb, cb), (bc, cc), result = got.baseline, got.canary, got.result
    sequential = check.mode == "sequential"
    keep_b, keep_c = cb > 0, cc > 0
    vb, vc = _finite(bb)[keep_b], _finite(bc)[keep_c]
    if decrease:  # the worse side is smaller: compare the other way
        pairs = PairwiseDifferences.from_samples(vc, vb, cc[keep_c], cb[keep_b])
        margin = -math.log(1 - check.tolerance)
    else:
        pairs = PairwiseDifferences.from_samples(vb, vc, cb[keep_b], cc[keep_c])
        margin = math.log(1 + check.tolerance)
    ev = shift_evidence(
        [pairs],
        margin,
        alpha=check.alpha,
        tau=check.tau or DEFAULT_TAU_SHIFT,
        kind="sequential" if sequential else "fixed",
    )
    result = with_evidence(result, ev, difference=False, mirrored=decrease)
    method = "binned-buckets"
    return replace(
        result,
        method=f"sequential/{method}" if sequential else method,
        reason="tested" if result.ready else got.few,
    )


def exceedance(
    check: PrometheusCheckSpec,
    baseline: QueryOutcome,
    canary: QueryOutcome,
    min_samples: int,
) -> CheckResult:
    """Each group's share of the step's requests above the bucket holding the pooled
    ``quantile``, compared as a difference of shares with the error-rate check's confidence
    sequence (the access-log exceedance check on Prometheus buckets)."""
    got = _buckets(check, baseline, canary, min_samples, "difference", check.tolerance)
    if isinstance(got, CheckResult):
        return got
    (bb, cb), (bc, cc), result = got.baseline, got.canary, got.result
    if bb.shape != bc.shape or not np.array_equal(bb, bc):
        return _with(
            result, "inconclusive", "the groups' buckets differ: query one histogram for both"
        )
    assert check.quantile is not None
    stratum, at = exceedance_counts(cb, cc, check.quantile)
    above = float(bb[at])
    if not math.isfinite(above):  # nothing is above +Inf: the tail is not resolved
        return _with(
            result,
            "inconclusive",
            f"the pooled p{check.quantile * 100:g} lies in the +Inf bucket: this histogram "
            "cannot resolve that tail; add buckets or check a lower quantile",
        )
    sequential = check.mode == "sequential"
    ev = rate_evidence(
        [stratum],
        check.tolerance,
        alpha=check.alpha,
        tau=check.tau or DEFAULT_TAU_RATE,
        kind="sequential" if sequential else "fixed",
    )
    result = with_evidence(result, ev, difference=True, mirrored=False)
    method = "exceedance-buckets"
    return replace(
        result,
        method=f"sequential/{method}" if sequential else method,
        reason=f"tested: share above {above:g}" if result.ready else got.few,
    )


def _finite(bounds: np.ndarray) -> np.ndarray:
    """Bucket bounds with +Inf as a bound past the largest finite one (order is what counts)."""
    finite = bounds[np.isfinite(bounds)]
    top = float(finite.max()) * 10 if finite.size and finite.max() > 0 else 1.0
    return np.where(np.isfinite(bounds), bounds, top)


def unanswered(check: PrometheusCheckSpec, why: str) -> list[QueryOutcome]:
    """The outcomes of a check whose queries got no answer (``why``): it is ``nodata``."""
    return [QueryOutcome(error=why, unasked=True)] * (
        1 if check.resolved_test == "threshold" else 2
    )


def evaluate(
    check: PrometheusCheckSpec, outcomes: Sequence[QueryOutcome], min_samples: int
) -> CheckResult:
    """``outcomes``: one query for threshold checks; baseline then canary otherwise."""
    kind = check.resolved_test
    if kind == "threshold":
        return threshold(check, outcomes[0])
    if kind == "relative":
        return relative(check, outcomes[0], outcomes[1])
    if kind == "exceedance":
        return exceedance(check, outcomes[0], outcomes[1], min_samples)
    return histogram(check, outcomes[0], outcomes[1], min_samples)
