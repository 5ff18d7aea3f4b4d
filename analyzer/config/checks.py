"""How a rollout is judged: the analysis settings, access-log and Prometheus checks.

Must not: compute anything (analyzer/analysis does).
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from analyzer.config.base import Alpha, Duration, RuleModel
from analyzer.config.notify import Secret
from analyzer.config.presets import PROMETHEUS_PRESETS, TEMPLATE_RE, TEMPLATE_VARIABLES


class WarmupGuard(RuleModel):
    """A hard guard for the warm-up: only far-off canaries, shown at the check's alpha."""

    ratio: float = Field(default=3.0, gt=1, description="latency ratio canary/baseline")
    error_rate: float = Field(
        default=0.2, gt=0, lt=1, description="error-rate difference canary - baseline"
    )


class AnalysisSpec(RuleModel):
    interval: Duration = 10.0
    min_step_duration: Duration = 60.0
    max_step_duration: Duration = Field(
        default=1200.0,
        description="a step not shown within tolerance by then is inconclusive and "
        "onInconclusive applies; size it for the traffic with `canary-analyzer rules plan`",
    )
    min_samples: int = Field(
        default=200,
        ge=1,
        description="per group in the current step before it may advance (or pass)",
    )
    failure_threshold: int = Field(
        default=2, ge=1, description="consecutive judgments with harm shown that roll back"
    )
    on_inconclusive: Literal["hold", "rollback", "pause"] = "hold"
    dry_run: bool = False
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    warmup: Duration = Field(
        default=30.0,
        description="after each weight change, events of the first warmup seconds are kept "
        "out of the step's evidence (adapters loading, caches cold); still counted and shown",
    )
    warmup_guard: WarmupGuard | None = Field(
        default=None,
        description="during warm-up, roll back at once when a check is shown this far beyond "
        "its baseline (off unless set)",
    )
    max_unattributed: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="data-quality gate: when more than this share of the step's lines of the "
        "model name no adapter of either group, the rollout holds instead of advancing",
    )
    max_rejected: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="data-quality gate: when more than this share of the lines read during "
        "the step could not be read (rejected, by reason), the rollout holds instead of advancing",
    )
    advance_on: Literal["no-harm", "non-inferiority"] = Field(
        default="no-harm",
        description="what lets an intermediate step advance: no harm shown with minSamples "
        "(the promotion to 100% always needs every check shown within tolerance, pooled over "
        "all steps), or non-inferiority at every step",
    )

    @model_validator(mode="after")
    def _durations(self) -> AnalysisSpec:
        if self.interval <= 0:
            raise ValueError("interval must be > 0")
        if self.max_step_duration < self.min_step_duration:
            raise ValueError("maxStepDuration must be >= minStepDuration")
        if self.warmup >= self.max_step_duration:
            raise ValueError("warmup must be shorter than maxStepDuration")
        return self


LatencyMetric = Literal["ttft", "duration", "tpot", "prompt_tokens", "completion_tokens"]
Metric = Literal["ttft", "duration", "tpot", "prompt_tokens", "completion_tokens", "error_rate"]


class CheckSpec(RuleModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$", max_length=63)
    source: Literal["accesslog"] = "accesslog"
    metric: Metric
    test: Literal["mann-whitney", "proportion", "exceedance"] = Field(
        description="mann-whitney: latency/token shift as a ratio; proportion: error-rate "
        "difference; exceedance: share of requests above a quantile (tail regressions)"
    )
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="what is acceptable: a ratio for mann-whitney (0.1 = 10% slower), a "
        "difference for proportion and exceedance (0.01 = 1 point). Fail: the anytime-valid "
        "interval lies beyond it; pass: it lies inside; else inconclusive",
    )
    quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="exceedance: the tail checked, e.g. 0.99; the canary's share of requests "
        "above this quantile of both groups' pooled values may exceed the baseline's by at "
        "most the tolerance (a difference of shares: 0.015 is 1.5 points)",
    )
    alpha: Alpha = 0.01
    min_samples: int | None = Field(default=None, ge=1)
    dry_run: bool = False
    mode: Literal["sequential", "fixed"] = Field(
        default="sequential",
        description="sequential: anytime-valid, alpha holds however often the rule judges; "
        "fixed: a fixed-horizon test at every look (Kayenta-style; alpha inflates with looks)",
    )
    tau: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="sequential mode: the effect size it is tuned to detect fastest",
    )

    @property
    def compares_shares(self) -> bool:
        """The effect is a difference of shares (error rate, share above a quantile), not a
        latency ratio."""
        return self.metric == "error_rate" or self.test == "exceedance"

    @model_validator(mode="after")
    def _test_fits_metric(self) -> CheckSpec:
        if self.metric == "error_rate" and self.test != "proportion":
            raise ValueError("metric error_rate takes test: proportion")
        if self.metric != "error_rate" and self.test not in ("mann-whitney", "exceedance"):
            raise ValueError(f"metric {self.metric} takes test: mann-whitney or exceedance")
        if (self.test == "exceedance") != (self.quantile is not None):
            raise ValueError("quantile is set exactly for test: exceedance (e.g. 0.99)")
        if self.test == "exceedance" and self.direction != "increase":
            raise ValueError("exceedance checks only fail on a longer tail (direction increase)")
        if self.metric == "error_rate" and self.direction != "increase":
            raise ValueError("error_rate checks only fail on an increase")
        return self


class PrometheusCheckSpec(RuleModel):
    """A check on Prometheus: a threshold guard, a canary/baseline comparison of one query
    templated per group, or a histogram's bucket increases per group: Mann-Whitney (the shift)
    or exceedance (the share of requests above a quantile: tail regressions)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$", max_length=63)
    source: Literal["prometheus"]
    preset: str | None = None
    test: Literal["threshold", "relative", "mann-whitney", "exceedance"] | None = None
    quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="exceedance: the tail checked, e.g. 0.99; the canary's share of requests "
        "above the bucket holding this quantile of both groups' pooled buckets may exceed the "
        "baseline's by at most the tolerance (0.01 = 1 point)",
    )
    query: str | None = None
    min: float | None = None
    max: float | None = None
    compare: Literal["ratio", "difference"] | None = None
    direction: Literal["increase", "decrease"] = "increase"
    tolerance: float = Field(default=0.1, ge=0)
    alpha: Alpha = 0.01
    min_samples: int | None = Field(default=None, ge=1)
    mode: Literal["sequential", "fixed"] = "sequential"
    tau: float | None = Field(default=None, gt=0, lt=0.5)
    dry_run: bool = False

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PROMETHEUS_PRESETS:
            known = ", ".join(sorted(PROMETHEUS_PRESETS))
            raise ValueError(f"unknown preset {value!r}; known: {known}")
        return value

    @field_validator("query")
    @classmethod
    def _known_variables(cls, value: str | None) -> str | None:
        if value is None:
            return value
        unknown = sorted(set(TEMPLATE_RE.findall(value)) - TEMPLATE_VARIABLES)
        if unknown:
            raise ValueError(
                f"unknown template variable(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(TEMPLATE_VARIABLES))}"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> PrometheusCheckSpec:
        if self.query is None and self.preset is None:
            raise ValueError("a prometheus check needs a query or a preset")
        if self.resolved_test == "threshold" and self.min is None and self.max is None:
            raise ValueError("a threshold check needs min, max or both")
        preset_test = PROMETHEUS_PRESETS[self.preset]["test"] if self.preset else None
        # A histogram preset's bucket query serves both histogram tests.
        histogram = {preset_test, self.test} == {"mann-whitney", "exceedance"}
        if preset_test and self.test and self.test != preset_test and not histogram:
            raise ValueError(f"preset {self.preset} is a {preset_test} check")
        if (self.resolved_test == "exceedance") != (self.quantile is not None):
            raise ValueError("quantile is set exactly for test: exceedance (e.g. 0.99)")
        if self.resolved_test == "exceedance" and self.direction != "increase":
            raise ValueError("exceedance checks only fail on a longer tail (direction increase)")
        return self

    @property
    def resolved_test(self) -> str:
        if self.test is not None:
            return self.test
        return str(PROMETHEUS_PRESETS[self.preset or ""]["test"])

    @property
    def resolved_query(self) -> str:
        return self.query or str(PROMETHEUS_PRESETS[self.preset or ""]["query"])

    @property
    def resolved_compare(self) -> str:
        if self.compare is not None:
            return self.compare
        preset = PROMETHEUS_PRESETS.get(self.preset or "", {})
        return str(preset.get("compare", "ratio"))


class BasicAuth(RuleModel):
    username: str = Field(min_length=1)
    password: Secret


class PrometheusSpec(RuleModel):
    """Where Prometheus answers, and how to authenticate."""

    address: str = Field(pattern=r"^https?://", description="e.g. http://prometheus:9090")
    bearer_token: Secret | None = None
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout: Duration = 5.0
