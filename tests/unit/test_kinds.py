"""Check kinds behind one interface: the judge evaluates each check by its source."""

import asyncio
from pathlib import Path

from analyzer.analysis.checks import evaluate
from analyzer.analysis.judge import judge
from analyzer.analysis.kinds import KINDS, AccessLogKind, Evidence, PrometheusKind, kind_of
from analyzer.analysis.promchecks import QueryOutcome
from analyzer.analysis.windows import StepWindows
from analyzer.config import AnalysisSpec, PrometheusCheckSpec, load_rules
from analyzer.sources.metrics import NoMetricsSource, make_metrics_source
from tests.unit.test_windows_judge import TTFT, feed

DEMO_RULE = Path(__file__).resolve().parents[2] / "analyzer" / "demo" / "rule.yaml"
KV = PrometheusCheckSpec(name="kv", source="prometheus", preset="vllm-kv-cache", max=0.9)


def _windows() -> StepWindows:
    w = StepWindows(frozenset({"b1"}), frozenset({"c1"}), 0.0)
    feed(w, 2000, "b1", seed=1)
    feed(w, 600, "c1", seed=2)
    return w


def test_each_check_goes_to_the_kind_of_its_source() -> None:
    assert isinstance(kind_of(TTFT), AccessLogKind)
    assert isinstance(kind_of(KV), PrometheusKind)
    assert set(KINDS) == {"accesslog", "prometheus"}


def test_the_judge_evaluates_every_kind_on_the_evidence() -> None:
    w = _windows()
    full = Evidence([w], {"kv": [QueryOutcome(samples=(({}, 0.95),))]})
    v = judge([TTFT, KV], AnalysisSpec(), full)
    ttft, kv = v.checks
    alone = evaluate(TTFT, [w], AnalysisSpec().min_samples)
    assert ttft.p_value == alone.p_value and ttft.ci == alone.ci
    assert kv.status == "fail" and v.status == "fail"  # 95% KV cache over a 90% guard
    ok = judge([KV], AnalysisSpec(), Evidence([w], {"kv": [QueryOutcome(samples=(({}, 0.5),))]}))
    assert ok.checks[0].status == "pass"


def test_a_prometheus_check_without_answers_is_nodata_never_a_pass() -> None:
    w = _windows()
    unasked = judge([KV], AnalysisSpec(), Evidence([w]))
    assert unasked.checks[0].status == "nodata" and unasked.status == "nodata"
    assert "not queried" in unasked.checks[0].reason
    spec = load_rules([DEMO_RULE])[0][0].rule.spec
    source = make_metrics_source(None)
    assert isinstance(source, NoMetricsSource)
    outcomes = asyncio.run(source.outcomes(KV, spec, 0.0, 1.0))
    unconfigured = judge([KV], AnalysisSpec(), Evidence([w], {"kv": outcomes}))
    assert unconfigured.checks[0].status == "nodata"
    assert "no Prometheus configured" in unconfigured.checks[0].reason
    relative = PrometheusCheckSpec(name="e", source="prometheus", preset="epp-error-rate")
    assert len(asyncio.run(source.outcomes(relative, spec, 0.0, 1.0))) == 2
