"""One rule check on a rollout's evidence -> CheckResult with its numbers and outcome.

Evidence is every analysed step of the rollout so far, each step a stratum (the current step
last): the check's effect (TTFT ratio canary/baseline, error-rate difference) is pooled over
the steps with an anytime-valid confidence sequence (analyzer/stats/confidence.py). Outcomes:

- ``fail``: the interval lies beyond the tolerance (harm shown; after the familywise
  correction across the rule's checks, in judge.py);
- ``pass``: the interval lies inside the tolerance (non-inferiority shown) and the current step
  has ``minSamples`` per group;
- ``inconclusive``: neither shown yet, or too few samples; ``nodata``: a group has none.

A result is ``ready`` when the current step holds ``minSamples`` per group: a step that shows
no harm when ready may advance (``analysis.advanceOn: no-harm``); promotion always needs pass.

Must not: aggregate checks or decide the rollout (that is judge.py and rollout/).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from analyzer.analysis.windows import GroupWindow, StepWindows
from analyzer.config import CheckSpec, WarmupGuard
from analyzer.stats.confidence import (
    RAW_MAX_PAIRS,
    Boundary,
    Evidence,
    PairwiseDifferences,
    RateStratum,
    exceedance_stratum,
    rate_evidence,
    shift_evidence,
)
from analyzer.stats.sequential import DEFAULT_TAU_RATE, DEFAULT_TAU_SHIFT

CheckStatus = Literal["pass", "fail", "inconclusive", "nodata"]
EffectKind = Literal["ratio", "difference", "value"]
SEQUENTIAL_MIN_SAMPLES = 20
"""Below this many samples per group even a sequential check waits (normal approximation)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    metric: str
    status: CheckStatus
    n_baseline: int
    n_canary: int
    p_value: float | None = None
    """Always-valid p for harm (H0: within the tolerance); corrected in ``p_adjusted``."""
    p_adjusted: float | None = None
    p_within: float | None = None
    """Always-valid p for non-inferiority (H0: beyond the tolerance)."""
    effect: float | None = None
    effect_kind: EffectKind = "ratio"
    ci: tuple[float, float] | None = None
    """The confidence sequence the outcome is read from (each side one-sided 1 - alpha)."""
    bound: float | None = None
    """The tolerance on the effect's scale: 1.1 for a 10% ratio, +0.01 for a difference."""
    method: str | None = None
    alpha: float = 0.01
    tolerance: float = 0.0
    dry_run: bool = False
    reason: str = ""
    ready: bool = False
    """The current step has the samples it needs to pass (or advance on no harm)."""
    within: bool = False
    """Non-inferiority shown by the interval."""
    harm: bool = False
    """Harm shown by the interval, before the familywise correction."""
    strata: int = 1
    """Steps pooled into the evidence."""
    mirrored: bool = False
    """Worse is smaller (direction: decrease): the interval's lower end is the worse one."""

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def not_far_off(self) -> bool:
        """What a step needs to advance on no harm, so that a canary that looks worse is not
        given more traffic while harm is still being shown: the estimate within the
        tolerance, and for ratios the interval within twice it (a looser non-inferiority,
        read from the same interval, valid at every margin at once). Rate differences are
        held to their estimate only: with few errors their upper end stays wide for hundreds
        of requests."""
        if self.ci is None or self.effect is None or self.bound is None:
            return True
        if self.effect_kind == "difference":
            return self.effect <= self.bound
        if self.mirrored:
            return self.effect >= self.bound and (
                self.tolerance == 0 or self.ci[0] > 1 - 2 * self.tolerance
            )
        return self.effect <= self.bound and (
            self.tolerance == 0 or self.ci[1] < 1 + 2 * self.tolerance
        )

    def to_json(self) -> dict[str, Any]:
        """Full result, for logs and notifications."""
        return {
            "name": self.name,
            "metric": self.metric,
            "status": self.status,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "p_within": self.p_within,
            "effect": self.effect,
            "effect_kind": self.effect_kind,
            "ci": list(self.ci) if self.ci else None,
            "bound": self.bound,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "strata": self.strata,
            "method": self.method,
            "alpha": self.alpha,
            "tolerance": self.tolerance,
            "dry_run": self.dry_run,
            "reason": self.reason,
        }

    def evidence(self) -> dict[str, Any]:
        """The numbers a decision keeps (they travel in the object's state annotation)."""
        return {
            "name": self.name,
            "metric": self.metric,
            "status": self.status,
            "p_value": _sig(self.p_value),
            "p_adjusted": _sig(self.p_adjusted),
            "p_within": _sig(self.p_within),
            "effect": _sig(self.effect),
            "effect_kind": self.effect_kind,
            "ci": [_sig(self.ci[0]), _sig(self.ci[1])] if self.ci else None,
            "bound": _sig(self.bound),
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "strata": self.strata,
            "method": self.method,
            "dry_run": self.dry_run,
        }

    def settle(self, p_adjusted: float) -> CheckResult:
        """The outcome, on the corrected harm p-value and the interval."""
        if p_adjusted < self.alpha and self.harm:
            status: CheckStatus = "fail"
        elif self.within and self.ready:
            status = "pass"
        else:
            status = "inconclusive"
        settled = replace(self, p_adjusted=p_adjusted, status=status)
        return replace(settled, reason=explain(settled, status))


def _sig(x: float | None) -> float | None:
    if x is None or math.isinf(x):
        return None if x is None else x
    return float(f"{x:.6g}")


def show_interval(r: CheckResult) -> str:
    """``1.012 [0.951, 1.081]`` (ratio) or ``+0.0010 [-0.0040, +0.0062]`` (difference)."""
    if r.effect is None:
        return "no estimate"
    fmt = ".3f" if r.effect_kind == "ratio" else "+.4f"
    if not r.ci:
        return format(r.effect, fmt)
    lo, hi = (format(x, fmt) if math.isfinite(x) else ("-inf" if x < 0 else "inf") for x in r.ci)
    return f"{format(r.effect, fmt)} [{lo}, {hi}]"


def explain(r: CheckResult, status: CheckStatus) -> str:
    fmt = ".3f" if r.effect_kind == "ratio" else "+.4f"
    bound = format(r.bound, fmt) if r.bound is not None else "the tolerance"
    what = {"ratio": "canary/baseline", "difference": "error rate difference"}.get(
        r.effect_kind, "value"
    )
    if r.method and "exceedance" in r.method:
        what = "tail share difference"
    shown = f"{what} {show_interval(r)}"
    pooled = f" over {r.strata} steps" if r.strata > 1 else ""
    if status == "fail":
        p = f"p={r.p_adjusted:.3g}" if r.p_adjusted is not None else ""
        return f"{r.metric} beyond tolerance {bound}: {shown}{pooled}, {p} (alpha {r.alpha})"
    if status == "pass":
        p = f"p={r.p_within:.3g}" if r.p_within is not None else ""
        return f"{r.metric} within tolerance {bound}: {shown}{pooled}, {p} (alpha {r.alpha})"
    if not r.ready:
        return r.reason or f"{r.metric}: too few samples"
    return f"{r.metric} not yet shown within or beyond {bound}: {shown}{pooled}"


def deciding_p(check: Mapping[str, Any]) -> float | None:
    """The p of the side that decided, from a check's JSON: non-inferiority for a pass, harm
    (corrected) for a fail; none for an undecided check, whose p-values decide nothing."""
    if check["status"] == "pass":
        return check.get("p_within")
    if check["status"] == "fail":
        p = check.get("p_adjusted")
        return p if p is not None else check.get("p_value")
    return None


def effect_bound(check: CheckSpec) -> float:
    if check.compares_shares:
        return check.tolerance
    return 1 + check.tolerance if check.direction == "increase" else 1 - check.tolerance


def guarded_tolerance(check: CheckSpec, guard: WarmupGuard) -> float:
    """The tolerance a warm-up guard applies to ``check``: only far-off canaries fail it."""
    if check.compares_shares:
        return guard.error_rate
    return guard.ratio - 1 if check.direction == "increase" else 1 - 1 / guard.ratio


def _counts(check: CheckSpec, g: GroupWindow) -> int:
    return g.requests if check.metric == "error_rate" else g.metrics[check.metric].count


def evaluate(check: CheckSpec, strata: Sequence[StepWindows], min_samples: int) -> CheckResult:
    """Run one check on the rollout's steps (the current step last); provisional outcome.

    ``n_baseline``/``n_canary`` are the current step's samples; the evidence pools every step.
    """
    need = check.min_samples or min_samples
    current = strata[-1]
    nb, nc = _counts(check, current.baseline), _counts(check, current.canary)
    is_rate = check.compares_shares
    result = CheckResult(
        name=check.name,
        metric=check.metric,
        status="nodata",
        n_baseline=nb,
        n_canary=nc,
        effect_kind="difference" if is_rate else "ratio",
        bound=effect_bound(check),
        alpha=check.alpha,
        tolerance=check.tolerance,
        dry_run=check.dry_run,
        ready=nb >= need and nc >= need,
    )
    used = [w for w in strata if _counts(check, w.baseline) and _counts(check, w.canary)]
    if nb == 0 or nc == 0:
        empty = "baseline" if nb == 0 else "canary"
        return replace(result, reason=f"no {check.metric} samples from the {empty} group yet")
    few = f"too few samples to pass: baseline {nb}, canary {nc}, need {need} each"
    sequential = check.mode == "sequential"
    floor = SEQUENTIAL_MIN_SAMPLES if sequential else need
    pooled_b = sum(_counts(check, w.baseline) for w in used)
    pooled_c = sum(_counts(check, w.canary) for w in used)
    if min(pooled_b, pooled_c) < floor:
        return replace(result, status="inconclusive", reason=few)
    kind: Boundary = "sequential" if sequential else "fixed"
    if is_rate:
        if check.quantile is not None:
            rates = [
                exceedance_stratum(
                    w.baseline.metrics[check.metric].histogram,
                    w.canary.metrics[check.metric].histogram,
                    check.quantile,
                )
                for w in used
            ]
        else:
            rates = [
                RateStratum(
                    w.baseline.errors, w.baseline.requests, w.canary.errors, w.canary.requests
                )
                for w in used
            ]
        tau = check.tau or DEFAULT_TAU_RATE
        ev = rate_evidence(rates, check.tolerance, alpha=check.alpha, tau=tau, kind=kind)
        method = "exceedance" if check.quantile is not None else "score"
    else:
        pairs = [_pairs(check, w) for w in used]
        margin = math.log(1 + check.tolerance) if check.direction == "increase" else 0.0
        if check.direction == "decrease":
            margin = -math.log(1 - check.tolerance)
        tau = check.tau or DEFAULT_TAU_SHIFT
        ev = shift_evidence(pairs, margin, alpha=check.alpha, tau=tau, kind=kind)
        method = "binned" if any(p.spacing for p in pairs) else "asymptotic"
    result = with_evidence(result, ev, is_rate, check.direction == "decrease")
    result = replace(
        result,
        method=f"sequential/{method}" if sequential else method,
        strata=len(used),
        reason="tested" if result.ready else few,
    )
    return result


def with_evidence(
    result: CheckResult, ev: Evidence, difference: bool, mirrored: bool
) -> CheckResult:
    """Attach the pooled evidence, back on the effect's own scale."""
    if difference:
        effect, ci = ev.estimate, (ev.lower, ev.upper)
    elif mirrored:  # a decrease is the canary's log-ratio negated
        effect, ci = math.exp(-ev.estimate), (_exp(-ev.upper), _exp(-ev.lower))
    else:
        effect, ci = math.exp(ev.estimate), (_exp(ev.lower), _exp(ev.upper))
    return replace(
        result,
        status="inconclusive",
        p_value=ev.p_harm,
        p_within=ev.p_within,
        effect=effect,
        ci=ci,
        harm=ev.harm,
        within=ev.within,
        mirrored=mirrored,
    )


def _exp(x: float) -> float:
    return math.inf if x == math.inf else (0.0 if x == -math.inf else math.exp(x))


def _pairs(check: CheckSpec, w: StepWindows) -> PairwiseDifferences:
    """The stratum's pairwise differences, kept while its counts stay the same (an earlier
    step's windows rarely change, and then only by late events)."""
    mb, mc = w.baseline.metrics[check.metric], w.canary.metrics[check.metric]
    if check.direction == "decrease":  # the worse side is smaller: compare the other way
        mb, mc = mc, mb
    key = f"pairs:{check.metric}:{check.direction}"
    counts = (mb.count, mc.count)
    cached = w.cache.get(key)
    if isinstance(cached, tuple) and cached[0] == counts:
        return cached[1]  # type: ignore[no-any-return]
    raw_b, raw_c = mb.raw_values(), mc.raw_values()
    if raw_b is not None and raw_c is not None and raw_b.size * raw_c.size <= RAW_MAX_PAIRS:
        pairs = PairwiseDifferences.from_samples(raw_b, raw_c)
    else:
        pairs = PairwiseDifferences.from_histograms(mb.histogram, mc.histogram)
    if w.ends_at is not None:  # the current step's windows change at every look
        w.cache[key] = (counts, pairs)
    return pairs
