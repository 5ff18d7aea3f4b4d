"""Prometheus query results -> CheckResult. Pure: the querying is sources/prometheus.py.

Three kinds:
- threshold: one value against min/max (a pool-health guard);
- relative: the same query for the canary and the baseline group, compared as a ratio or a
  difference against the tolerance;
- mann-whitney: bucket increases of a Prometheus histogram per group (cumulative ``le`` counts),
  tested with the stats core's tie-corrected rank test, each bucket a tie group at its upper
  bound (the baseline's bounds scaled by the margin), sequential or fixed like access-log
  checks.
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

from analyzer.analysis.checks import CheckResult, conclude
from analyzer.config import PrometheusCheckSpec
from analyzer.stats.mannwhitney import weighted_mannwhitney
from analyzer.stats.sequential import DEFAULT_TAU_SHIFT, mixture_p, shift_information


@dataclass(frozen=True)
class QueryOutcome:
    """What one query returned: samples as (labels, value), or why there are none."""

    samples: tuple[tuple[Mapping[str, str], float], ...] = ()
    error: str | None = None
    unreachable: bool = False


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


def _median(bounds: np.ndarray, counts: np.ndarray) -> float:
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, cum[-1] / 2))
    lower = 0.0 if i == 0 else bounds[i - 1]
    upper = bounds[i]
    if math.isinf(upper):
        return float(lower)
    before = 0.0 if i == 0 else cum[i - 1]
    frac = (cum[-1] / 2 - before) / counts[i] if counts[i] else 1.0
    return float(lower + (upper - lower) * frac)


def histogram(
    check: PrometheusCheckSpec,
    baseline: QueryOutcome,
    canary: QueryOutcome,
    min_samples: int,
    running_p: dict[str, float] | None = None,
    analysed_steps: int = 1,
) -> CheckResult:
    for group, out in (("baseline", baseline), ("canary", canary)):
        problem = _problem(check, out, group)
        if problem is not None:
            return problem
    parsed_b, parsed_c = bucket_counts(baseline), bucket_counts(canary)
    for group, parsed in (("baseline", parsed_b), ("canary", parsed_c)):
        if isinstance(parsed, str):
            return _with(_base(check), "inconclusive", f"{group}: {parsed}")
    assert not isinstance(parsed_b, str) and not isinstance(parsed_c, str)
    (bb, cb), (bc, cc) = parsed_b, parsed_c
    nb, nc = int(cb.sum()), int(cc.sum())
    result = replace(_base(check), n_baseline=nb, n_canary=nc)
    if nb == 0 or nc == 0:
        empty = "baseline" if nb == 0 else "canary"
        return replace(result, reason=f"no requests in the {empty} buckets yet")
    scale = 1 + check.tolerance if check.direction == "increase" else 1 - check.tolerance
    alternative = "greater" if check.direction == "increase" else "less"
    keep_b, keep_c = cb > 0, cc > 0
    _, z, p = weighted_mannwhitney(
        bc[keep_c],
        cc[keep_c],
        bb[keep_b] * scale,
        cb[keep_b],
        alternative,  # type: ignore[arg-type]
    )
    med_b, med_c = _median(bb, cb), _median(bc, cc)
    effect = med_c / med_b if med_b > 0 else None
    if check.mode == "sequential":
        p = mixture_p(z, shift_information(nb, nc), check.tau or DEFAULT_TAU_SHIFT)
    result = replace(result, effect=effect, method="binned-buckets")
    memory = running_p if running_p is not None else {}
    return conclude(result, p, check.mode, check.min_samples or min_samples, memory, analysed_steps)


def evaluate(
    check: PrometheusCheckSpec,
    outcomes: Sequence[QueryOutcome],
    min_samples: int,
    running_p: dict[str, float] | None = None,
    analysed_steps: int = 1,
) -> CheckResult:
    """``outcomes``: one query for threshold checks; baseline then canary otherwise."""
    kind = check.resolved_test
    if kind == "threshold":
        return threshold(check, outcomes[0])
    if kind == "relative":
        return relative(check, outcomes[0], outcomes[1])
    return histogram(check, outcomes[0], outcomes[1], min_samples, running_p, analysed_steps)
