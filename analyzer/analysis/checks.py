"""One rule check evaluated on one step's windows -> CheckResult with its numbers.

Status before correction: ``nodata`` when a group has no samples, ``inconclusive`` below the
minimum samples, otherwise the test's p-value is attached and the judge decides pass/fail after
the familywise correction.

Must not: aggregate checks or decide the rollout (that is judge.py and rollout/).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from analyzer.analysis.windows import StepWindows
from analyzer.config import CheckSpec
from analyzer.stats.mannwhitney import compare_binned, compare_raw
from analyzer.stats.rates import compare_rates
from analyzer.stats.sequential import (
    DEFAULT_TAU_RATE,
    DEFAULT_TAU_SHIFT,
    sequential_rate_p,
    sequential_shift_p,
)

CheckStatus = Literal["pass", "fail", "inconclusive", "nodata"]
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
    p_adjusted: float | None = None
    effect: float | None = None
    effect_kind: Literal["ratio", "difference", "value"] = "ratio"
    ci: tuple[float, float] | None = None
    method: str | None = None
    alpha: float = 0.01
    tolerance: float = 0.0
    dry_run: bool = False
    reason: str = ""
    may_pass: bool = True
    """False below minSamples: a sequential check may already fail there, never pass."""

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    def to_json(self) -> dict[str, Any]:
        """Full result, for logs and notifications."""
        return {
            "name": self.name,
            "metric": self.metric,
            "status": self.status,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "effect": self.effect,
            "effect_kind": self.effect_kind,
            "ci": list(self.ci) if self.ci else None,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
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
            "effect": _sig(self.effect),
            "effect_kind": self.effect_kind,
            "ci": [_sig(self.ci[0]), _sig(self.ci[1])] if self.ci else None,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "method": self.method,
            "dry_run": self.dry_run,
        }

    def settle(self, p_adjusted: float) -> CheckResult:
        """Pass or fail on the corrected p-value (below minSamples: fail or inconclusive)."""
        failed = p_adjusted < self.alpha
        if not failed and not self.may_pass:
            return replace(self, p_adjusted=p_adjusted)
        return replace(
            self,
            p_adjusted=p_adjusted,
            status="fail" if failed else "pass",
            reason=_explain(self, failed, p_adjusted),
        )


def _sig(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.6g}")


def _explain(r: CheckResult, failed: bool, p_adj: float) -> str:
    if r.effect_kind == "ratio":
        shown = f"canary/baseline {r.effect:.3f}" if r.effect is not None else "no effect estimate"
        ci = f" [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.ci else ""
        margin = f"tolerance +{r.tolerance:.0%}"
    else:
        shown = f"error rate difference {r.effect:+.4f}" if r.effect is not None else ""
        ci = f" [{r.ci[0]:+.4f}, {r.ci[1]:+.4f}]" if r.ci else ""
        margin = f"tolerance {r.tolerance:+.4f}"
    verdict = "exceeds" if failed else "within"
    return f"{r.metric} {verdict} {margin}: {shown}{ci}, p={p_adj:.3g} (alpha {r.alpha})"


def evaluate(
    check: CheckSpec, windows: StepWindows, min_samples: int, analysed_steps: int = 1
) -> CheckResult:
    """Run one check; the status is final for nodata/inconclusive, provisional otherwise.

    Sequential checks report the rollout-level always-valid p-value: the step's running
    minimum, times the number of analysed steps (Bonferroni across steps), so a check's alpha
    bounds the chance of failing a good canary anywhere in the rollout.
    """
    need = check.min_samples or min_samples
    is_rate = check.metric == "error_rate"
    if is_rate:
        nb, nc = windows.baseline.requests, windows.canary.requests
    else:
        windows.flush()
        mb = windows.baseline.metrics[check.metric]
        mc = windows.canary.metrics[check.metric]
        nb, nc = mb.count, mc.count
    result = CheckResult(
        name=check.name,
        metric=check.metric,
        status="nodata",
        n_baseline=nb,
        n_canary=nc,
        effect_kind="difference" if is_rate else "ratio",
        alpha=check.alpha,
        tolerance=check.tolerance,
        dry_run=check.dry_run,
    )
    if nb == 0 or nc == 0:
        empty = "baseline" if nb == 0 else "canary"
        return replace(result, reason=f"no {check.metric} samples from the {empty} group yet")
    effect: float | None
    ci: tuple[float, float] | None
    if is_rate:
        rate = compare_rates(
            windows.baseline.errors,
            nb,
            windows.canary.errors,
            nc,
            tolerance=check.tolerance,
            alpha=check.alpha,
        )
        effect, ci, p, method = rate.effect, rate.ci, rate.p_value, str(rate.method)
        if check.mode == "sequential":
            p = sequential_rate_p(rate, check.tolerance, check.tau or DEFAULT_TAU_RATE)
    else:
        raw_b, raw_c = mb.raw_values(), mc.raw_values()
        if raw_b is not None and raw_c is not None:
            shift = compare_raw(
                raw_b,
                raw_c,
                tolerance=check.tolerance,
                alpha=check.alpha,
                direction=check.direction,
            )
        else:
            shift = compare_binned(
                mb.histogram,
                mc.histogram,
                tolerance=check.tolerance,
                alpha=check.alpha,
                direction=check.direction,
            )
        effect, ci, p, method = shift.effect, shift.ci, shift.p_value, str(shift.method)
        if check.mode == "sequential":
            p = sequential_shift_p(shift, check.tau or DEFAULT_TAU_SHIFT)
    result = replace(result, effect=effect, ci=ci, method=method)
    return conclude(result, p, check.mode, need, windows.running_p, analysed_steps)


def conclude(
    result: CheckResult,
    p: float,
    mode: str,
    need: int,
    running_p: dict[str, float],
    analysed_steps: int,
) -> CheckResult:
    """Attach a test's p-value to a result, by the rules every tested check follows.

    Sequential p-values become rollout-level always-valid ones: the step's running minimum,
    times the analysed steps (Bonferroni across steps). Below ``need`` samples a check stays
    inconclusive, except that a sequential check (from 20 samples per group) may already fail.
    """
    nb, nc = result.n_baseline, result.n_canary
    sequential = mode == "sequential"
    if sequential:
        if min(nb, nc) >= SEQUENTIAL_MIN_SAMPLES:
            p = min(1.0, p * max(1, analysed_steps), running_p.get(result.name, 1.0))
            running_p[result.name] = p
        result = replace(result, method=f"sequential/{result.method}")
    result = replace(result, status="inconclusive")
    if nb < need or nc < need:
        few = f"too few samples to pass: baseline {nb}, canary {nc}, need {need} each"
        if sequential and min(nb, nc) >= SEQUENTIAL_MIN_SAMPLES:
            # Anytime-valid: conclusive evidence of harm counts whenever it comes.
            return replace(result, p_value=p, may_pass=False, reason=few)
        return replace(result, reason=few)
    return replace(result, p_value=p, reason="tested")
