"""The metrics-source plugin kind: where Prometheus checks get their query results.

One small interface (``MetricsSource``), one implementation per file (prometheus.py), a no-op
(``NoMetricsSource``: a rule with no Prometheus configured gets ``nodata`` for such checks,
never a pass) and a factory, as ``notify/`` does for transports.

Must not: decide pass/fail (analysis/promchecks.py does).
"""

from __future__ import annotations

from typing import Protocol

from analyzer.analysis.promchecks import QueryOutcome, unanswered
from analyzer.config import PrometheusCheckSpec, PrometheusSpec, RuleSpec


class MetricsSource(Protocol):
    async def outcomes(
        self, check: PrometheusCheckSpec, spec: RuleSpec, step_start: float, now: float
    ) -> list[QueryOutcome]:
        """The query results a check needs: one, or baseline then canary."""
        ...

    async def served(self, spec: RuleSpec, since: float, now: float) -> tuple[int, int] | None:
        """Requests the endpoint picker sent to the baseline and to the canary between
        ``since`` and ``now`` (its rewrite decisions); None when it does not say."""
        ...

    def close(self) -> None: ...


class NoMetricsSource:
    """No Prometheus configured: every query answers that, so the check is ``nodata``."""

    async def outcomes(
        self, check: PrometheusCheckSpec, spec: RuleSpec, step_start: float, now: float
    ) -> list[QueryOutcome]:
        return unanswered(check, "no Prometheus configured for this rule")

    async def served(self, spec: RuleSpec, since: float, now: float) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        pass


def make_metrics_source(spec: PrometheusSpec | None) -> MetricsSource:
    if spec is None:
        return NoMetricsSource()
    # Imported here: the HTTP client is only loaded by rules that query Prometheus.
    from analyzer.sources.prometheus import PrometheusSource  # noqa: PLC0415

    return PrometheusSource(spec)
