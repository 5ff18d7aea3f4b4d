"""rules plan: step sizing from the confidence sequences' own model."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.analysis.plan import plan_rule
from analyzer.cli import main
from analyzer.config import CheckSpec, load_rules
from tests.conftest import DEMO


def _spec():  # type: ignore[no-untyped-def]
    return load_rules([DEMO / "rule.yaml"])[0][0].rule.spec


def test_more_traffic_needs_less_time_and_never_less_than_min_step() -> None:
    spec = _spec()
    slow, fast = plan_rule(spec, 5.0), plan_rule(spec, 50.0)
    assert len(slow.steps) == len(fast.steps) == 3  # the step at 100% is the promotion
    for s, f in zip(slow.steps, fast.steps, strict=True):
        assert s.seconds >= f.seconds >= spec.analysis.min_step_duration
        assert s.seconds % spec.analysis.interval == 0
    assert fast.warnings == () and slow.total_seconds > fast.total_seconds


def test_low_traffic_warns_and_suggests_a_max_step_that_fits() -> None:
    plan = plan_rule(_spec(), 2.0)
    assert plan.warnings and "maxStepDuration" in plan.warnings[0]
    assert all(s.seconds <= plan.suggested_max_step for s in plan.steps)
    assert plan.steps[-1].waits_for in ("ttft", "errors", "ttft-p99")  # promotion: within


def test_a_bigger_regression_is_detected_sooner() -> None:
    spec = _spec()
    small, big = plan_rule(spec, 20.0, regression=1.2), plan_rule(spec, 20.0, regression=1.5)
    assert big.steps[0].detect_seconds < small.steps[0].detect_seconds


def test_prometheus_histogram_checks_are_planned_per_step_not_pooled() -> None:
    """A Prometheus-only rule: its histogram checks decide the promotion, each on its own
    step's buckets, so the last step waits longer than the same checks pooled would."""
    root = Path(__file__).resolve().parents[2] / "rules"
    spec = load_rules([root / "vllm-epp-prometheus.yaml"])[0][0].rule.spec
    plan = plan_rule(spec, 20.0)
    assert plan.steps[-1].waits_for in ("ttft", "ttft-p99", "e2e-p99")
    assert plan.steps[-1].seconds > spec.analysis.min_step_duration
    assert all(s.detect_seconds < float("inf") for s in plan.steps)
    same_from_logs = [
        CheckSpec(name="ttft", metric="ttft", test="mann-whitney", tolerance=0.1),
        CheckSpec(name="p99", metric="ttft", test="exceedance", quantile=0.99, tolerance=0.01),
    ]
    pooled = plan_rule(spec.model_copy(update={"checks": same_from_logs}), 20.0)
    assert pooled.steps[-1].seconds < plan.steps[-1].seconds
    guards = [c for c in spec.checks if c.name in ("kv-cache", "queue")]
    only_guards = plan_rule(spec.model_copy(update={"checks": guards}), 20.0)
    assert only_guards.steps[-1].waits_for == "minStepDuration"  # values: nothing to wait for


def test_cli_plan_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = str(DEMO / "rule.yaml")
    assert main(["rules", "plan", rule, "--rps", "50"]) == 0
    out = capsys.readouterr().out
    assert "suggested maxStepDuration" in out and "50%" in out
    assert main(["rules", "plan", rule, "--rps", "2"]) == 1
    assert "warning: step 10%" in capsys.readouterr().out
    assert main(["rules", "plan", rule]) == 2
    assert "--rps" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["rules", "plan", rule, "--events", str(empty)]) == 1
    assert "too few events" in capsys.readouterr().err


def test_cli_plan_reads_traffic_from_a_recorded_log(
    simulated_log,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    log = simulated_log(canary_ttft_factor=1.0, rps=20)
    capsys.readouterr()
    main(["rules", "plan", str(DEMO / "rule.yaml"), "--events", str(log)])
    first = capsys.readouterr().out.splitlines()[0]
    rps = float(first.split()[1])
    assert 17 < rps < 23, first
