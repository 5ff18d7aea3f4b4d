"""Plan a rollout before starting it: how long each step needs at a given traffic.

For each check the evidence grows like the confidence sequence's own model
(analyzer/stats/confidence.py): Z = theta * sqrt(I), with the information I summed over the
steps and theta the standardized effect at the tolerance,

- TTFT shift: theta = Phi((delta - m) / (sigma sqrt 2)) - 1/2 with m = log(1 + tolerance),
  delta the true log-ratio, sigma the spread of log TTFT; I = 12 n_b n_c / (n_b + n_c + 1);
- rates (errors, tail shares above a quantile): theta = d - tolerance, I = 1 / Var(d) with
  Var(d) = p (1 - p) (1 / n_c + 1 / n_b).

A side is shown when |Z| exceeds c(I) (``critical_z``); the plan asks for Z beyond c(I) + 1.28
(Z's noise is one standard deviation), at the traffic the step gets. Measured against whole
rollouts (bench/RESULTS.md): the plan's total is within 10% of the bench's median time to
promote at 2, 20 and 50 req/s; the p90 is up to 1.4x it, which the suggested maxStepDuration
(1.25x the longest step, rounded up to a minute) covers per step.
Intermediate steps need ``minSamples`` per group after the warm-up (``advanceOn: no-harm``), or
non-inferiority (``non-inferiority``); the last step before 100% needs every check shown
within tolerance, pooled over the steps (a Prometheus histogram check: within its own step's
buckets, which are not pooled; its bucket resolution is not modelled).

Must not: read files or clocks, or look at live evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from analyzer.config import CheckSpec, PrometheusCheckSpec, RuleSpec
from analyzer.stats.confidence import critical_z
from analyzer.stats.sequential import DEFAULT_TAU_RATE, DEFAULT_TAU_SHIFT

NOISE = 1.2816  # one-sided 90% normal quantile of Z's noise
LONGEST = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StepPlan:
    percent: int
    canary_rps: float
    seconds: float
    """What the step needs: at least minStepDuration, rounded up to the interval."""
    detect_seconds: float
    """From the step's start, until the regression is shown at this step alone (median)."""
    waits_for: str
    """minStepDuration, minSamples, or the check the step waits for."""


@dataclass(frozen=True)
class RulePlan:
    rps: float
    regression: float
    steps: tuple[StepPlan, ...]
    suggested_max_step: float
    warnings: tuple[str, ...]

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


def _planned(check: CheckSpec | PrometheusCheckSpec) -> CheckSpec | None:
    """The check as the plan models it: a Prometheus histogram check is the access-log check
    of the same test on TTFT; value checks (threshold, relative) have no evidence to wait for."""
    if isinstance(check, CheckSpec):
        return check
    test = check.resolved_test
    if test not in ("mann-whitney", "exceedance") or check.direction != "increase":
        return None
    return CheckSpec(
        name=check.name,
        metric="ttft",
        test=test,  # type: ignore[arg-type]
        tolerance=min(check.tolerance, 0.99),
        quantile=check.quantile,
        alpha=check.alpha,
        mode=check.mode,
        tau=check.tau,
    )


def _theta(check: CheckSpec, sigma: float, factor: float) -> float:
    """Standardized effect at the tolerance when the canary's TTFT is x``factor``."""
    if check.metric == "error_rate":
        return -check.tolerance
    if check.test == "exceedance":
        base = 1 - (check.quantile or 0.99)
        moved = float(special.ndtr(-(special.ndtri(1 - base) * sigma - math.log(factor)) / sigma))
        return moved - base - check.tolerance
    margin = math.log(1 + check.tolerance)
    return float(special.ndtr((math.log(factor) - margin) / (sigma * math.sqrt(2)))) - 0.5


def _info_rate(check: CheckSpec, rc: float, rb: float, error_rate: float) -> float:
    """Information per second of evidence at canary/baseline rates rc, rb (requests/s)."""
    if check.compares_shares:
        p = error_rate if check.metric == "error_rate" else 1 - (check.quantile or 0.99)
        return 1.0 / (p * (1 - p) * (1 / rc + 1 / rb))
    return 12.0 * rc * rb * (1 - error_rate) / (rc + rb)  # latencies: successes only


def _tau(check: CheckSpec) -> float:
    return check.tau or (DEFAULT_TAU_RATE if check.compares_shares else DEFAULT_TAU_SHIFT)


def _shown(check: CheckSpec, info: float, theta: float, margin: float) -> bool:
    if info <= 0:
        return False
    crit = critical_z(info, check.alpha, _tau(check), check.mode)
    return abs(theta) * math.sqrt(info) >= crit + margin


def _round_up(seconds: float, interval: float) -> float:
    return math.ceil(seconds / interval - 1e-9) * interval


def plan_rule(
    spec: RuleSpec,
    rps: float,
    sigma: float = 0.5,
    error_rate: float = 0.005,
    regression: float | None = None,
) -> RulePlan:
    """The plan of ``spec``'s steps at ``rps`` requests/s (sigma: the spread of log TTFT)."""
    if rps <= 0:
        raise ValueError("rps must be > 0")
    a = spec.analysis
    checks = [c for c in (_planned(c) for c in spec.checks) if c is not None]
    unpooled = {c.name for c in spec.checks if isinstance(c, PrometheusCheckSpec)}
    ttft = next((c for c in checks if c.test == "mann-whitney"), None)
    factor = regression or 1 + (ttft.tolerance if ttft else 0.1) + 0.1
    judged = [p for p in spec.steps if p < 100] or spec.steps[:1]
    pooled = [0.0] * len(checks)  # information per check from the steps before this one
    plans: list[StepPlan] = []
    warnings: list[str] = []
    for k, percent in enumerate(judged):
        rc, rb = rps * percent / 100, rps * (1 - percent / 100) or 1e-9
        last = k == len(judged) - 1 or a.advance_on == "non-inferiority"
        need = a.min_samples / (rc * (1 - error_rate)) + a.warmup
        waits = "minSamples" if need > a.min_step_duration else "minStepDuration"
        t = max(a.min_step_duration, need)
        if last:
            for i, c in enumerate(checks):
                rate = _info_rate(c, rc, rb, error_rate)
                theta = _theta(c, sigma, 1.0)
                lo, hi = 0.0, LONGEST
                if not _shown(c, pooled[i] + rate * hi, theta, NOISE):
                    lo = hi
                while hi - lo > 1:
                    mid = 0.5 * (lo + hi)
                    lo, hi = (
                        (lo, mid) if _shown(c, pooled[i] + rate * mid, theta, NOISE) else (mid, hi)
                    )
                if hi + a.warmup > t:
                    t, waits = hi + a.warmup, c.name
        t = _round_up(t, a.interval)
        detect = math.inf
        if ttft is not None:
            rate = _info_rate(ttft, rc, rb, error_rate)
            theta = _theta(ttft, sigma, factor)
            for step in range(1, int(LONGEST / a.interval)):
                s = step * a.interval
                if s > a.warmup and _shown(ttft, rate * (s - a.warmup), theta, 0.0):
                    detect = s
                    break
        for i, c in enumerate(checks):
            if c.name not in unpooled:  # a Prometheus check sees its own step's buckets only
                pooled[i] += _info_rate(c, rc, rb, error_rate) * max(0.0, t - a.warmup)
        plans.append(StepPlan(percent, rc, t, detect, waits))
    longest = max(p.seconds for p in plans)
    suggested = _round_up(max(a.min_step_duration, longest * 1.25), 60.0)
    for p in plans:
        if p.seconds > a.max_step_duration:
            warnings.append(
                f"step {p.percent}% needs about {p.seconds:.0f} s at {rps:g} req/s (waiting for "
                f"{p.waits_for}) but maxStepDuration is {a.max_step_duration:.0f} s: set "
                f"maxStepDuration: {suggested:.0f}s, or raise the traffic or the tolerance"
            )
    return RulePlan(rps, factor, tuple(plans), suggested, tuple(warnings))
