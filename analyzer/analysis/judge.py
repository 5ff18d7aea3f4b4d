"""All of a rule's checks on one step -> a Verdict.

The familywise correction (Holm by default) runs across the harm p-values of the checks that
reached a test, so a rule with five checks at alpha 1% does not fail a healthy canary five times
as often. The within side needs no correction: a pass needs every check within its tolerance
(an intersection-union test), so alpha bounds a false promotion as it is. Dry-run checks are
evaluated and reported, but neither fail nor block the rollout.

Verdict: ``fail`` if any enforcing check fails; ``pass`` only if every enforcing check passes
(non-inferiority shown for each); ``nodata`` if no enforcing check has data; ``inconclusive``
otherwise. ``no_harm`` says a step may still advance on "no harm shown with enough samples"
(``analysis.advanceOn: no-harm``): every enforcing check tested, ready, none failing, and each
shown within twice its tolerance (``CheckResult.not_far_off``: a canary that is clearly worse
stays at its share until harm is shown). Missing data never passes and never counts as no harm.

Must not: change rollout state (that is rollout/machine.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from analyzer.analysis.checks import CheckResult
from analyzer.analysis.kinds import Evidence, kind_of
from analyzer.config import AnalysisSpec, CheckSpec, PrometheusCheckSpec
from analyzer.stats.corrections import adjust

VerdictStatus = Literal["pass", "fail", "inconclusive", "nodata"]


@dataclass(frozen=True)
class Verdict:
    status: VerdictStatus
    checks: tuple[CheckResult, ...]

    @property
    def no_harm(self) -> bool:
        enforcing = [c for c in self.checks if not c.dry_run]
        return self.status != "fail" and all(
            c.status == "pass" or (c.tested and c.ready and c.status != "fail" and c.not_far_off)
            for c in enforcing
        )

    @property
    def summary(self) -> str:
        failing = [c for c in self.checks if c.status == "fail" and not c.dry_run]
        if failing:
            return "; ".join(f"{c.name}: {c.reason}" for c in failing)
        waiting = [c for c in self.checks if c.status in ("inconclusive", "nodata")]
        if waiting and self.status != "pass":
            return "; ".join(f"{c.name}: {c.reason}" for c in waiting)
        return "all checks pass"

    def checks_json(self) -> tuple[dict[str, Any], ...]:
        return tuple(c.evidence() for c in self.checks)


def settle(results: Sequence[CheckResult], analysis: AnalysisSpec) -> Verdict:
    """Apply the correction to tested results and aggregate."""
    tested = [i for i, r in enumerate(results) if r.tested and not r.dry_run]
    adjusted = adjust([results[i].p_value or 0.0 for i in tested], analysis.correction)
    final = list(results)
    for i, p in zip(tested, adjusted, strict=True):
        final[i] = results[i].settle(p)
    for i, r in enumerate(results):
        if r.tested and r.dry_run:  # reported uncorrected: it does not spend the family's alpha
            final[i] = r.settle(r.p_value or 0.0)
    enforcing = [r for r in final if not r.dry_run]
    status: VerdictStatus
    if any(r.status == "fail" for r in enforcing):
        status = "fail"
    elif all(r.status == "pass" for r in enforcing):
        status = "pass"
    elif enforcing and all(r.status == "nodata" for r in enforcing):
        status = "nodata"
    else:
        status = "inconclusive"
    return Verdict(status=status, checks=tuple(final))


def judge(
    checks: Sequence[CheckSpec | PrometheusCheckSpec], analysis: AnalysisSpec, evidence: Evidence
) -> Verdict:
    """Every check, each by its kind, on the judgment's evidence; then corrected and
    aggregated (``settle``)."""
    return settle(
        [kind_of(c).evaluate(c, evidence, analysis.min_samples) for c in checks], analysis
    )
