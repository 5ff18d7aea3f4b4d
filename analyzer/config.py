"""Rule files: the public contract SREs write, its validation, and the JSON Schema for editors.

A rule file holds one or more YAML documents of ``kind: CanaryRule``. Loading never raises on bad
input: every problem comes back as a ``RuleError`` with file, line, column and field path, and the
caller decides what to keep running. Unknown keys are errors.

Must not: start rollouts, touch routed objects, or read events.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

API_VERSION = "canary-analyzer.io/v1alpha1"

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """'90s', '1m30s', '500ms', '2h' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h))+$"},
            ],
            "description": "seconds, or a string such as 10s, 5m, 1h30m, 500ms",
        }
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


CanonicalField = Literal[
    "timestamp",
    "model",
    "target",
    "status",
    "ttft",
    "duration",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "request_id",
]
TimeUnit = Literal["s", "ms", "us", "ns"]
TimestampFormat = Literal["auto", "rfc3339", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns"]


class FieldSpec(_Model):
    """Where a canonical field sits in a JSON log line (dotted path) and in which unit."""

    path: str = Field(min_length=1)
    unit: TimeUnit | None = None
    format: TimestampFormat | None = None


def _field_spec(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


FieldRef = Annotated[FieldSpec, BeforeValidator(_field_spec)]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Istio/Envoy JSON access log (Istio's default JSON keys) plus the model fields a gateway
    # adds for LLM traffic; see rules/README.md for the accessLogFormat that produces it.
    "envoy-json": {
        "timestamp": {"path": "start_time", "format": "rfc3339"},
        "model": {"path": "model"},
        "target": {"path": "target_model"},
        "status": {"path": "response_code"},
        "ttft": {"path": "response_duration", "unit": "ms"},
        "duration": {"path": "duration", "unit": "ms"},
        "prompt_tokens": {"path": "prompt_tokens"},
        "completion_tokens": {"path": "completion_tokens"},
        "finish_reason": {"path": "finish_reason"},
        "request_id": {"path": "request_id"},
    },
    # The endpoint picker's per-request log line (zap JSON, epoch seconds in ``ts``).
    "epp": {
        "timestamp": {"path": "ts", "format": "epoch_s"},
        "model": {"path": "model"},
        "target": {"path": "targetModel"},
        "status": {"path": "responseCode"},
        "ttft": {"path": "ttftSeconds", "unit": "s"},
        "duration": {"path": "latencySeconds", "unit": "s"},
        "prompt_tokens": {"path": "promptTokens"},
        "completion_tokens": {"path": "completionTokens"},
        "finish_reason": {"path": "finishReason"},
        "request_id": {"path": "requestId"},
    },
}

REQUIRED_FIELDS: tuple[CanonicalField, ...] = ("timestamp", "model", "target")


class EventsSpec(_Model):
    """How to read one access-log line."""

    preset: str | None = None
    fields: dict[CanonicalField, FieldRef] = Field(default_factory=dict)
    error_statuses: list[int | str] = Field(
        default_factory=lambda: list[int | str](["5xx"]),
        description="status codes counted as errors: 503, or a class such as 5xx",
    )
    error_finish_reasons: list[str] = Field(default_factory=lambda: ["error"])
    max_line_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; known: {', '.join(sorted(PRESETS))}")
        return value

    @field_validator("error_statuses")
    @classmethod
    def _status_patterns(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if isinstance(item, int):
                if not 100 <= item <= 599:
                    raise ValueError(f"status {item} is not an HTTP status")
            elif not re.fullmatch(r"[1-5]xx", item):
                raise ValueError(f"{item!r} is neither a status code nor a class like 5xx")
        return value

    @model_validator(mode="after")
    def _required_mapped(self) -> EventsSpec:
        mapped = set(self.resolved_fields())
        missing = [f for f in REQUIRED_FIELDS if f not in mapped]
        if missing:
            raise ValueError("events need a preset or a mapping for: " + ", ".join(missing))
        return self

    def resolved_fields(self) -> dict[str, FieldSpec]:
        """The preset's fields overlaid with the explicit ones."""
        out: dict[str, FieldSpec] = {}
        if self.preset:
            out.update({k: FieldSpec.model_validate(v) for k, v in PRESETS[self.preset].items()})
        out.update({str(k): v for k, v in self.fields.items()})
        return out


KNOWN_API_VERSIONS: dict[str, tuple[str, ...]] = {
    "InferenceModel": (
        "inference.networking.x-k8s.io/v1alpha1",
        "inference.networking.x-k8s.io/v1alpha2",
    ),
    "InferenceModelRewrite": ("llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"),
}


class TargetRef(_Model):
    kind: Literal["InferenceModel", "InferenceModelRewrite"]
    api_version: str
    namespace: str = Field(default="default", min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
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


Alpha = Annotated[
    float,
    Field(
        gt=0,
        lt=0.5,
        description="per side, over the whole rollout: the chance of a false rollback "
        "(before Holm) and of a false promotion",
    ),
]


class WarmupGuard(_Model):
    """A hard guard for the warm-up: only far-off canaries, shown at the check's alpha."""

    ratio: float = Field(default=3.0, gt=1, description="latency ratio canary/baseline")
    error_rate: float = Field(
        default=0.2, gt=0, lt=1, description="error-rate difference canary - baseline"
    )


class AnalysisSpec(_Model):
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


class CheckSpec(_Model):
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


TEMPLATE_VARIABLES = frozenset(
    {
        "model",
        "namespace",
        "canary_regex",
        "baseline_regex",
        "group_regex",
        "adapters",
        "interval",
        "step_start",
        "step_duration",
    }
)
_TEMPLATE_RE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")

PROMETHEUS_PRESETS: dict[str, dict[str, Any]] = {
    # Pool health guards (vLLM metrics carry no adapter label: they guard the whole pool).
    # vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; the old name is the fallback
    # for older servers (a guard on a name that no longer exists would be nodata forever).
    "vllm-kv-cache": {
        "test": "threshold",
        "query": "max(vllm:kv_cache_usage_perc) or max(vllm:gpu_cache_usage_perc)",
    },
    "vllm-queue": {"test": "threshold", "query": "max(vllm:num_requests_waiting)"},
    "vllm-error-share": {
        "test": "threshold",
        "query": 'sum(increase(vllm:request_success_total{finished_reason="error"}'
        "[{{ step_duration }}])) / sum(increase(vllm:request_success_total[{{ step_duration }}]))",
    },
    # Per adapter, from the endpoint picker (llm_d_epp_*, labels model_name/target_model_name).
    "epp-error-rate": {
        "test": "relative",
        "compare": "difference",
        "query": 'sum(increase(llm_d_epp_request_error_total{model_name="{{ model }}",'
        'target_model_name=~"{{ group_regex }}"}[{{ step_duration }}])) / '
        'sum(increase(llm_d_epp_request_total{model_name="{{ model }}",'
        'target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
    "epp-ttft": {
        "test": "mann-whitney",
        "query": "sum by (le) (increase(llm_d_epp_request_ttft_seconds_bucket{model_name="
        '"{{ model }}",target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
    "epp-e2e": {
        "test": "mann-whitney",
        "query": "sum by (le) (increase(llm_d_epp_request_duration_seconds_bucket{model_name="
        '"{{ model }}",target_model_name=~"{{ group_regex }}"}[{{ step_duration }}]))',
    },
}


class PrometheusCheckSpec(_Model):
    """A check on Prometheus: a threshold guard, a canary/baseline comparison of one query
    templated per group, or Mann-Whitney on a histogram's bucket increases per group."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$", max_length=63)
    source: Literal["prometheus"]
    preset: str | None = None
    test: Literal["threshold", "relative", "mann-whitney"] | None = None
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
        unknown = sorted(set(_TEMPLATE_RE.findall(value)) - TEMPLATE_VARIABLES)
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
        if self.preset and self.test and self.test != PROMETHEUS_PRESETS[self.preset]["test"]:
            raise ValueError(
                f"preset {self.preset} is a {PROMETHEUS_PRESETS[self.preset]['test']} check"
            )
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


class BasicAuth(_Model):
    username: str = Field(min_length=1)
    password: Secret


class PrometheusSpec(_Model):
    """Where Prometheus answers, and how to authenticate."""

    address: str = Field(pattern=r"^https?://", description="e.g. http://prometheus:9090")
    bearer_token: Secret | None = None
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout: Duration = 5.0


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


class RuleSpec(_Model):
    target: TargetRef
    model: str = Field(min_length=1, max_length=256)
    baseline: list[str] = Field(min_length=1, max_length=10)
    canary: list[str] = Field(min_length=1, max_length=10)
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
        if len(baseline) + len(value) > 10:
            raise ValueError("baseline and canary together exceed 10 targets (the CRD maximum)")
        return value

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


def _secret_ref(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            "secrets (URLs, tokens, signing keys) are never written inline: "
            "use {env: VARIABLE} or {file: /path/to/mounted/secret}"
        )
    return value


class SecretRef(_Model):
    """Where a secret lives: an environment variable or a file (a mounted Kubernetes Secret)."""

    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    @property
    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"


Secret = Annotated[SecretRef, BeforeValidator(_secret_ref)]
Severity = Literal["info", "warn", "error"]


class _Destination(_Model):
    severity: Severity = Field(default="info", description="the least severe decision to send")
    timeout: Duration = 5.0
    max_attempts: int = Field(default=5, ge=1, le=20)
    queue_size: int = Field(default=1000, ge=1, le=100_000)


class SlackDestination(_Destination):
    """Slack: an incoming webhook, or a bot token posting to a channel (threads per rollout)."""

    type: Literal["slack"]
    name: str = Field(default="slack", min_length=1, max_length=63)
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    api_url: str = Field(default="https://slack.com/api", description="Web API base URL")

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackDestination:
        if self.webhook_url is None and self.token is None:
            raise ValueError("slack needs webhookUrl, or token and channel")
        if self.token is not None and not self.channel:
            raise ValueError("a slack bot token needs a channel")
        return self


class WebhookDestination(_Destination):
    """A JSON POST per decision, signed with HMAC-SHA256 when a secret is given."""

    type: Literal["webhook"]
    name: str = Field(default="webhook", min_length=1, max_length=63)
    url: Secret
    secret: Secret | None = None


Destination = Annotated[SlackDestination | WebhookDestination, Field(discriminator="type")]


class GateSpec(_Model):
    """Asked before the rollout advances (confirm-step) or promotes (confirm-promotion).

    A 2xx answer lets it go on; anything else, an error or a timeout holds it.
    """

    name: str = Field(min_length=1, max_length=63)
    type: Literal["confirm-step", "confirm-promotion"]
    url: Secret
    secret: Secret | None = None
    timeout: Duration = 5.0


class Metadata(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=55)
    labels: dict[str, str] = Field(default_factory=dict)


class CanaryRule(_Model):
    api_version: Literal["canary-analyzer.io/v1alpha1"]
    kind: Literal["CanaryRule"]
    metadata: Metadata
    spec: RuleSpec


@dataclass(frozen=True)
class RuleError:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class LoadedRule:
    rule: CanaryRule
    source: Path
    line: int

    @property
    def name(self) -> str:
        return self.rule.metadata.name

    @property
    def manifest_path(self) -> Path | None:
        file = self.rule.spec.target.file
        if file is None:
            return None
        path = Path(file)
        return path if path.is_absolute() else (self.source.parent / path)


def _position(node: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """Line/column (1-based) of the deepest node on ``loc`` that exists in the YAML tree."""
    line, col = 0, 0
    lc = getattr(node, "lc", None)
    if lc is not None:
        line, col = lc.line, lc.col
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line, col = node.lc.item(key)
            node = node[key]
        else:
            break
    return line + 1, col + 1


_UNION_TAGS = frozenset({"slack", "webhook", "accesslog", "prometheus"})


def _drop_union_tags(node: Any, loc: Sequence[int | str]) -> list[int | str]:
    """Pydantic puts a tagged union's tag in the error path; the YAML has no such key."""
    out: list[int | str] = []
    for key in loc:
        if isinstance(node, dict) and key not in node and key in _UNION_TAGS:
            continue
        out.append(key)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            node = None
    return out


def _field_name(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse_rule_text(text: str, source: str) -> tuple[list[CanaryRule], list[RuleError], list[int]]:
    """Parse every document of one rule file. Returns rules, errors and each rule's line."""
    yaml = YAML(typ="rt")
    rules: list[CanaryRule] = []
    lines: list[int] = []
    errors: list[RuleError] = []
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        errors.append(RuleError(source, line, col, "", f"YAML: {exc.problem or exc}"))
        return rules, errors, lines
    if not docs:
        errors.append(RuleError(source, 1, 1, "", "the file holds no rule"))
    for doc in docs:
        if not isinstance(doc, CommentedMap):
            line, col = _position(doc, [])
            errors.append(RuleError(source, line, col, "", "a rule must be a YAML mapping"))
            continue
        try:
            rule = CanaryRule.model_validate(_plain(doc))
        except ValidationError as exc:
            for err in exc.errors():
                loc = _drop_union_tags(
                    doc, [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
                )
                line, col = _position(doc, loc)
                msg = err["msg"].removeprefix("Value error, ")
                errors.append(RuleError(source, line, col, _field_name(loc), msg))
            continue
        rules.append(rule)
        lines.append(doc.lc.line + 1)
    return rules, errors, lines


def rule_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.iterdir())
                if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
            )
        else:
            out.append(path)
    return out


def target_key(rule: CanaryRule) -> tuple[str, str, str, str, str]:
    """What two rules must not share: the routed object and the virtual model."""
    t = rule.spec.target
    group = t.api_version.split("/")[0]
    return (t.kind, group, t.namespace, t.name, rule.spec.model)


def load_rules(paths: Iterable[Path]) -> tuple[list[LoadedRule], list[RuleError]]:
    """Load every rule under ``paths``; refuse duplicates by name and by object + model."""
    loaded: list[LoadedRule] = []
    errors: list[RuleError] = []
    for path in rule_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(RuleError(str(path), 0, 0, "", f"cannot read: {exc}"))
            continue
        rules, errs, lines = parse_rule_text(text, str(path))
        errors.extend(errs)
        loaded.extend(LoadedRule(r, path, ln) for r, ln in zip(rules, lines, strict=True))
    by_name: dict[str, LoadedRule] = {}
    by_target: dict[tuple[str, ...], LoadedRule] = {}
    kept: list[LoadedRule] = []
    for item in loaded:
        first = by_name.get(item.name)
        if first is not None:
            errors.append(
                RuleError(
                    str(item.source),
                    item.line,
                    1,
                    "metadata.name",
                    f"rule name {item.name!r} is already used at {first.source}:{first.line}",
                )
            )
            continue
        key = target_key(item.rule)
        other = by_target.get(key)
        if other is not None:
            errors.append(
                RuleError(
                    str(item.source),
                    item.line,
                    1,
                    "spec.target",
                    f"{key[0]} {key[2]}/{key[3]} model {key[4]!r} is already driven by rule "
                    f"{other.name!r} ({other.source}:{other.line}); one rule per object and model",
                )
            )
            continue
        by_name[item.name] = item
        by_target[key] = item
        kept.append(item)
    return kept, errors


def json_schema() -> dict[str, Any]:
    schema = CanaryRule.model_json_schema(by_alias=True)
    # A field may be given as a bare dotted path: say so, as the validator accepts it.
    fields = schema["$defs"]["EventsSpec"]["properties"]["fields"]
    fields["additionalProperties"] = {
        "anyOf": [{"type": "string", "minLength": 1}, fields["additionalProperties"]]
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "canary-analyzer CanaryRule"
    return schema
