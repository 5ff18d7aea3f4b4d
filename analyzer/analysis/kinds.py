"""Check kinds, as plugins: one small interface (``CheckKind``), one implementation per source
of evidence, and a factory (``kind_of``) keyed by the check's ``source``.

A kind turns one check and the judgment's evidence into a provisional ``CheckResult``; the
judge (judge.py) corrects and aggregates them. Evidence is gathered before judging, by the
runtime (windows folded from the access log; the answers of a ``MetricsSource`` to each
Prometheus check's queries), so every kind is pure. A new kind is a class here and an entry in
``KINDS``, with its rule model in config/checks.py.

Must not: do I/O or read clocks; change rollout state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from analyzer.analysis import checks, promchecks
from analyzer.analysis.checks import CheckResult
from analyzer.analysis.promchecks import QueryOutcome
from analyzer.analysis.windows import StepWindows
from analyzer.config import CheckSpec, PrometheusCheckSpec

Spec_contra = TypeVar("Spec_contra", contravariant=True)


@dataclass(frozen=True)
class Evidence:
    """What a judgment sees."""

    strata: Sequence[StepWindows]
    """The rollout's steps so far, the current one last (access-log checks pool them)."""
    queries: Mapping[str, Sequence[QueryOutcome]] = field(default_factory=dict)
    """Per Prometheus check (by name), what its queries returned at this judgment."""


class CheckKind(Protocol[Spec_contra]):
    def evaluate(self, check: Spec_contra, evidence: Evidence, min_samples: int) -> CheckResult: ...


class AccessLogKind:
    """Checks on the access log's windows: TTFT shift, tail exceedance, error rate..."""

    def evaluate(self, check: CheckSpec, evidence: Evidence, min_samples: int) -> CheckResult:
        return checks.evaluate(check, evidence.strata, min_samples)


class PrometheusKind:
    """Checks on Prometheus query results: thresholds, relative, histogram comparisons."""

    def evaluate(
        self, check: PrometheusCheckSpec, evidence: Evidence, min_samples: int
    ) -> CheckResult:
        outcomes = evidence.queries.get(check.name)
        if outcomes is None:  # not asked at this judgment: no data, never a pass
            outcomes = promchecks.unanswered(check, "not queried at this judgment")
        return promchecks.evaluate(check, outcomes, min_samples)


KINDS: dict[str, CheckKind[Any]] = {"accesslog": AccessLogKind(), "prometheus": PrometheusKind()}


def kind_of(check: CheckSpec | PrometheusCheckSpec) -> CheckKind[Any]:
    return KINDS[check.source]
