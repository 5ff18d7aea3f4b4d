from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from analyzer.config import json_schema, load_rules, parse_duration, parse_rule_text

ROOT = Path(__file__).resolve().parents[2]
GOOD = """\
apiVersion: canary-analyzer.io/v1alpha1
kind: CanaryRule
metadata: {name: sql-lora-v2}
spec:
  target:
    kind: InferenceModel
    apiVersion: inference.networking.x-k8s.io/v1alpha2
    namespace: default
    name: inferencemodel-sample
    file: manifest.yaml
  model: lora-request
  baseline: [sql-lora, sql-lora-1, sql-lora-2]
  canary: [sql-lora-v2, sql-lora-v2-1]
  steps: [10, 25, 50, 100]
  analysis:
    interval: 10s
    minStepDuration: 60s
    maxStepDuration: 20m
    minSamples: 200
    failureThreshold: 2
    onInconclusive: hold
    dryRun: false
  checks:
  - {name: ttft, source: accesslog, metric: ttft, test: mann-whitney, direction: increase, tolerance: 0.10, alpha: 0.01}
  - {name: errors, source: accesslog, metric: error_rate, test: proportion, tolerance: 0.01, alpha: 0.01}
  events: {preset: envoy-json}
"""


def test_issue_contract_parses() -> None:
    rules, errors, lines = parse_rule_text(GOOD, "good.yaml")
    assert errors == []
    spec = rules[0].spec
    assert spec.analysis.max_step_duration == 1200.0
    assert spec.checks[0].tolerance == 0.10
    assert lines == [1]


@pytest.mark.parametrize(
    ("old", "new", "field", "text"),
    [
        ("minSamples: 200", "minSamples: 0", "spec.analysis.minSamples", "greater than"),
        ("minSamples: 200", "minSample: 200", "spec.analysis.minSample", "Extra inputs"),
        ("steps: [10, 25, 50, 100]", "steps: [10, 50, 25, 100]", "spec.steps", "increasing"),
        ("steps: [10, 25, 50, 100]", "steps: [10, 25, 50]", "spec.steps", "must be 100"),
        ("canary: [sql-lora-v2, sql-lora-v2-1]", "canary: [sql-lora-2]", "spec.canary", "disjoint"),
        (
            "baseline: [sql-lora, sql-lora-1, sql-lora-2]",
            "baseline: []",
            "spec.baseline",
            "at least 1",
        ),
        ("interval: 10s", "interval: ten", "spec.analysis.interval", "duration"),
        ("onInconclusive: hold", "onInconclusive: wait", "spec.analysis.onInconclusive", "'hold'"),
        (
            "apiVersion: inference.networking.x-k8s.io/v1alpha2",
            "apiVersion: inference.networking.x-k8s.io/v9",
            "spec.target.apiVersion",
            "not known",
        ),
        (
            "metric: error_rate, test: proportion",
            "metric: error_rate, test: mann-whitney",
            "spec.checks[1]",
            "takes test: proportion",
        ),
        ("{preset: envoy-json}", "{preset: nginx}", "spec.events.preset", "unknown preset"),
        ("{preset: envoy-json}", "{fields: {model: m}}", "spec.events", "timestamp, target"),
    ],
)
def test_errors_carry_file_line_and_field(old: str, new: str, field: str, text: str) -> None:
    assert old in GOOD
    bad = GOOD.replace(old, new)
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if new in ln)
    rules, errors, _ = parse_rule_text(bad, "bad.yaml")
    assert rules == []
    assert any(
        e.file == "bad.yaml" and e.line == line and e.field == field and text in e.message
        for e in errors
    ), [str(e) for e in errors]


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("minSamples: 200", "minSamples: -1").replace("interval: 10s", "interval: x")
    text = text.replace("failureThreshold: 2", "failureThreshold: 2\n    bogus: 1")
    _, errors, _ = parse_rule_text(text, "bad.yaml")
    assert {e.field for e in errors} >= {
        "spec.analysis.minSamples",
        "spec.analysis.interval",
        "spec.analysis.bogus",
    }


def test_yaml_syntax_and_non_mapping_errors() -> None:
    _, errors, _ = parse_rule_text("spec: [unclosed\n", "x.yaml")
    assert errors and errors[0].line >= 1 and "YAML" in errors[0].message
    _, errors, _ = parse_rule_text("- a\n- b\n", "x.yaml")
    assert "mapping" in errors[0].message
    _, errors, _ = parse_rule_text("a: 1\na: 2\n", "x.yaml")
    assert errors and "YAML" in errors[0].message
    _, errors, _ = parse_rule_text("", "x.yaml")
    assert "no rule" in errors[0].message


def test_duplicate_rules_across_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: sql-lora-v2}", "name: other}"))
    (tmp_path / "c.yaml").write_text(GOOD)
    rules, errors = load_rules([tmp_path])
    assert [r.name for r in rules] == ["sql-lora-v2"]
    messages = [str(e) for e in errors]
    assert any(
        "b.yaml:1:1: spec.target" in m and "one rule per object and model" in m for m in messages
    )
    assert any("c.yaml:1:1: metadata.name" in m and "already used" in m for m in messages)


def test_manifest_path_is_relative_to_the_rule(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(GOOD)
    rules, _ = load_rules([tmp_path / "r.yaml"])
    assert rules[0].manifest_path == tmp_path / "manifest.yaml"


def test_durations() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration(12) == 12
    for bad in ("1d", True, "-5s", "s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_json_schema_accepts_the_shipped_rules() -> None:
    schema = json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    files = [*sorted((ROOT / "rules").glob("*.yaml")), ROOT / "analyzer/demo/rule.yaml"]
    assert len(files) >= 2
    for path in files:
        for doc in YAML(typ="safe").load_all(path.read_text()):
            errors = list(validator.iter_errors(doc))
            assert errors == [], (path, errors[:1])
    rules, errors = load_rules(files)
    assert errors == [] and len(rules) == len(files)
    bad = YAML(typ="safe").load(GOOD)
    bad["spec"]["analysis"]["bogus"] = 1
    assert list(validator.iter_errors(bad))
