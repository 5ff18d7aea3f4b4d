"""What guards a rollout's actions before they are applied: the weights they lead to, the
data-quality gate that holds a step whose data the analyzer could not attribute, the
warm-up guard that rolls back a canary far off while the step's evidence is still warming up,
and the check that the traffic follows the weights written.

Must not: do I/O, read clocks, or decide a verdict (machine.py turns verdicts into actions).
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.analysis.checks import guarded_tolerance
from analyzer.analysis.judge import Verdict, judge
from analyzer.analysis.kinds import Evidence
from analyzer.analysis.windows import StepWindows
from analyzer.config import AnalysisSpec, RuleSpec
from analyzer.rollout.machine import Announce, RestoreWeights, RolloutAction, SetCanaryPercent
from analyzer.rollout.state import RolloutState
from analyzer.rollout.weights import Target, WeightLimits, canary_share, split
from analyzer.stats.share import follow_band, not_following, wilson_interval


def targets_after(
    state: RolloutState, actions: list[RolloutAction], spec: RuleSpec, limits: WeightLimits
) -> tuple[Target, ...] | None:
    """The object's targets once ``actions`` are applied; None when they leave them alone."""
    targets: tuple[Target, ...] | None = None
    for action in actions:
        if isinstance(action, SetCanaryPercent):
            targets = tuple(
                split(state.original, spec.baseline, spec.canary, action.percent, limits)
            )
        elif isinstance(action, RestoreWeights):
            targets = rolled_back(state, spec, limits)
    return targets


def rolled_back(state: RolloutState, spec: RuleSpec, limits: WeightLimits) -> tuple[Target, ...]:
    """The canary at 0%: the exact pre-rollout weights when it had no traffic then, else
    its targets at the object's minimum with the baseline keeping its proportions."""
    if canary_share(state.original, spec.canary) == 0:
        return state.original
    return tuple(split(state.original, spec.baseline, spec.canary, 0, limits))


def data_quality_refusal(
    actions: list[RolloutAction],
    windows: StepWindows | None,
    analysis: AnalysisSpec,
    model: str,
) -> str | None:
    """Why the step may not advance on the data it read (too many lines that could not be
    read, or of the model naming no adapter of either group), if it may not; None when it may,
    or when it is not moving."""
    moving = any(
        isinstance(a, Announce) and a.decision.action in ("advance", "promote") for a in actions
    )
    if not moving or windows is None:
        return None
    rejected, limit = windows.rejected_share(), analysis.max_rejected
    if rejected > limit:
        reasons = ", ".join(f"{r}: {n}" for r, n in windows.rejected.most_common(5))
        return (
            f"data quality: {rejected:.1%} of the lines read during this step could not be "
            f"read (limit {limit:.0%}; {reasons}); fix the access log's format or the rule's "
            "field map"
        )
    share = windows.unattributed_share()
    limit = analysis.max_unattributed
    if share <= limit:
        return None
    named = ", ".join(f"{a or '(none)'}: {n}" for a, n in windows.unrouted.most_common(5))
    return (
        f"data quality: {share:.1%} of this step's {model} lines name no adapter "
        f"of either group (limit {limit:.0%}; {named}); fix the access log's adapter field "
        "or the rule's groups"
    )


def warmup_verdict(spec: RuleSpec, windows: StepWindows | None, now: float) -> Verdict | None:
    """During warm-up, a failing verdict when a check is shown far beyond the baseline (the
    rule's ``warmupGuard``); None otherwise."""
    guard = spec.analysis.warmup_guard
    if guard is None or windows is None or now >= windows.evidence_from:
        return None
    checks = [
        c.model_copy(update={"tolerance": guarded_tolerance(c, guard), "min_samples": 1})
        for c in spec.accesslog_checks
    ]
    verdict = judge(checks, spec.analysis, Evidence([windows.warm_view()]))
    return verdict if verdict.status == "fail" else None


def outside_edit(
    state: RolloutState, targets: Sequence[Target], inconsistency: str | None
) -> str | None:
    """Why the object's weights are not the ones this rollout wrote (someone else changed
    them: a pause), or None."""
    if state.phase != "Progressing" or not state.applied:
        return None
    if tuple(targets) == state.applied and inconsistency is None:
        return None
    edit = inconsistency or ", ".join(f"{n}={w}" for n, w in targets)
    return f"weights changed outside canary-analyzer ({edit}); resume to continue"


def not_taken(state: RolloutState, refusal: str | None) -> str | None:
    """Why the weights written do not take effect, said by the object's own controller (a
    pause), or None."""
    if state.phase != "Progressing" or refusal is None:
        return None
    return f"weights written, not taken: {refusal}; fix it, then resume"


def traffic_not_following(
    served: tuple[int, int] | None, state: RolloutState, spec: RuleSpec, source: str
) -> str | None:
    """Why the step's traffic is shown not to follow the weights written (stats/share.py),
    or None. ``served``: requests to the baseline and the canary from ``SETTLE`` seconds into
    the step on (a gateway still applying the change does not count against it), as
    ``source`` counted them."""
    if served is None or not state.applied or state.phase != "Progressing":
        return None
    written = float(canary_share(state.applied, spec.canary))
    baseline, canary = served
    total = baseline + canary
    if not not_following(canary, total, written):
        return None
    lo, hi = wilson_interval(canary, total)
    band_lo, band_hi = follow_band(written)
    return (
        f"weights written, traffic not following: the weights give the canary {written:.1%}, "
        f"in {source} it got {canary / total:.1%} [{lo:.1%}, {hi:.1%}] of {total} requests "
        f"(expected within {band_lo:.1%}..{band_hi:.1%}); check that the gateway reads this "
        "object (another group or object routing the model? a stale config?), then resume"
    )
