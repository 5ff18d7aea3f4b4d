"""A CanaryRule: the routed object, the adapters, the steps, its checks and notifications.

Must not: load files (loading.py does).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from analyzer.config.base import RuleModel
from analyzer.config.checks import AnalysisSpec, CheckSpec, PrometheusCheckSpec, PrometheusSpec
from analyzer.config.events import EventsSpec
from analyzer.config.notify import Destination, GateSpec

KNOWN_API_VERSIONS: dict[str, tuple[str, ...]] = {
    "InferenceModel": (
        "inference.networking.x-k8s.io/v1alpha1",
        "inference.networking.x-k8s.io/v1alpha2",
    ),
    "InferenceModelRewrite": ("llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"),
}
MAX_TARGETS = {"HTTPRoute": 16}
"""Targets one object may route (backendRefs of an HTTPRoute rule); 10 for the others."""


class TargetRef(RuleModel):
    kind: Literal["InferenceModel", "InferenceModelRewrite", "HTTPRoute"]
    api_version: str
    namespace: str = Field(default="default", min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    rule_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="HTTPRoute only: the one route rule (spec.rules[].name) to re-weight; "
        "default: every rule whose backendRefs name a pool of the rule's groups",
    )
    file: str | None = Field(
        default=None, description="manifest on disk (embedded file router), relative to the rule"
    )

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:
            return value
        allowed = KNOWN_API_VERSIONS[kind]
        if value not in allowed:
            raise ValueError(
                f"apiVersion {value!r} is not known for {kind}; use one of: {', '.join(allowed)}"
            )
        return value

    @model_validator(mode="after")
    def _rule_name_for_routes(self) -> TargetRef:
        if self.rule_name is not None and self.kind != "HTTPRoute":
            raise ValueError("ruleName selects a rule of an HTTPRoute; drop it for " + self.kind)
        return self


def _check_source(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("source", "accesslog"))
    return str(getattr(value, "source", "accesslog"))


def _default_checks() -> list[CheckSpec]:
    return [
        CheckSpec(name="ttft", metric="ttft", test="mann-whitney", tolerance=0.1, alpha=0.01),
        CheckSpec(
            name="errors", metric="error_rate", test="proportion", tolerance=0.01, alpha=0.01
        ),
        CheckSpec(
            name="ttft-p99",
            metric="ttft",
            test="exceedance",
            quantile=0.99,
            tolerance=0.015,
            alpha=0.01,
        ),
    ]


AnyCheck = Annotated[
    Annotated[CheckSpec, Tag("accesslog")] | Annotated[PrometheusCheckSpec, Tag("prometheus")],
    Discriminator(_check_source),
]


class RuleSpec(RuleModel):
    target: TargetRef
    model: str = Field(min_length=1, max_length=256)
    baseline: list[str] = Field(min_length=1, max_length=16)
    canary: list[str] = Field(min_length=1, max_length=16)
    steps: list[int] = Field(min_length=1)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    checks: list[AnyCheck] = Field(default_factory=_default_checks, min_length=1)  # type: ignore[arg-type]
    prometheus: PrometheusSpec | None = None
    events: EventsSpec = Field(default_factory=lambda: EventsSpec(preset="envoy-json"))
    notify: list[Destination] = Field(default_factory=list)
    gates: list[GateSpec] = Field(default_factory=list)

    @field_validator("baseline", "canary")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            if not name:
                raise ValueError("adapter names must not be empty")
            if name in seen:
                raise ValueError(f"adapter {name!r} is listed twice")
            seen.add(name)
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in value):
            raise ValueError("each step is a canary percentage in 1..100")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("steps must be strictly increasing")
        if value[-1] != 100:
            raise ValueError("the last step must be 100 (promotion)")
        return value

    @field_validator("canary")
    @classmethod
    def _disjoint(cls, value: list[str], info: ValidationInfo) -> list[str]:
        baseline = info.data.get("baseline")
        if baseline is None:
            return value
        both = sorted(set(baseline) & set(value))
        if both:
            raise ValueError(f"baseline and canary must be disjoint; both list {', '.join(both)}")
        return value

    @model_validator(mode="after")
    def _fits_the_object(self) -> RuleSpec:
        limit = MAX_TARGETS.get(self.target.kind, 10)
        if len(self.baseline) + len(self.canary) > limit:
            raise ValueError(
                f"baseline and canary together exceed {limit} targets "
                f"(the {self.target.kind} maximum)"
            )
        return self

    @field_validator("checks")
    @classmethod
    def _unique_checks(cls, value: list[AnyCheck]) -> list[AnyCheck]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _prometheus_configured(self) -> RuleSpec:
        if self.prometheus is None and any(isinstance(c, PrometheusCheckSpec) for c in self.checks):
            raise ValueError("prometheus checks need spec.prometheus.address")
        return self

    @property
    def accesslog_checks(self) -> list[CheckSpec]:
        return [c for c in self.checks if isinstance(c, CheckSpec)]

    @property
    def prometheus_checks(self) -> list[PrometheusCheckSpec]:
        return [c for c in self.checks if isinstance(c, PrometheusCheckSpec)]


class Metadata(RuleModel):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=55)
    labels: dict[str, str] = Field(default_factory=dict)


class CanaryRule(RuleModel):
    api_version: Literal["canary-analyzer.io/v1alpha1"]
    kind: Literal["CanaryRule"]
    metadata: Metadata
    spec: RuleSpec
