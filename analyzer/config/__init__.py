"""Rule files: the public contract SREs write, its validation, and the JSON Schema for editors.

A rule file holds one or more YAML documents of ``kind: CanaryRule``. The models live in one
module per part of a rule (``events``, ``checks``, ``notify``, ``rule``; shared pieces in
``base``, named presets in the leaf ``presets``), loading with line numbers in ``loading``;
this package exports them all, so callers import from ``analyzer.config``.

Must not: start rollouts, touch routed objects, or read events.
"""

from analyzer.config.base import API_VERSION, Alpha, Duration, RuleModel, parse_duration
from analyzer.config.checks import (
    AnalysisSpec,
    BasicAuth,
    CheckSpec,
    LatencyMetric,
    Metric,
    PrometheusCheckSpec,
    PrometheusSpec,
    WarmupGuard,
)
from analyzer.config.events import (
    REQUIRED_FIELDS,
    CanonicalField,
    EventsSpec,
    FieldSpec,
    TimestampFormat,
    TimeUnit,
)
from analyzer.config.loading import (
    LoadedRule,
    RuleError,
    json_schema,
    load_rules,
    parse_rule_text,
    rule_files,
    target_key,
)
from analyzer.config.notify import (
    Destination,
    GateSpec,
    Secret,
    SecretRef,
    Severity,
    SlackDestination,
    WebhookDestination,
)
from analyzer.config.presets import PRESETS, PROMETHEUS_PRESETS, TEMPLATE_RE, TEMPLATE_VARIABLES
from analyzer.config.rule import (
    KNOWN_API_VERSIONS,
    AnyCheck,
    CanaryRule,
    Metadata,
    RuleSpec,
    TargetRef,
)

__all__ = [
    "API_VERSION",
    "KNOWN_API_VERSIONS",
    "PRESETS",
    "PROMETHEUS_PRESETS",
    "REQUIRED_FIELDS",
    "TEMPLATE_RE",
    "TEMPLATE_VARIABLES",
    "Alpha",
    "AnalysisSpec",
    "AnyCheck",
    "BasicAuth",
    "CanaryRule",
    "CanonicalField",
    "CheckSpec",
    "Destination",
    "Duration",
    "EventsSpec",
    "FieldSpec",
    "GateSpec",
    "LatencyMetric",
    "LoadedRule",
    "Metadata",
    "Metric",
    "PrometheusCheckSpec",
    "PrometheusSpec",
    "RuleError",
    "RuleModel",
    "RuleSpec",
    "Secret",
    "SecretRef",
    "Severity",
    "SlackDestination",
    "TargetRef",
    "TimeUnit",
    "TimestampFormat",
    "WarmupGuard",
    "WebhookDestination",
    "json_schema",
    "load_rules",
    "parse_duration",
    "parse_rule_text",
    "rule_files",
    "target_key",
]
