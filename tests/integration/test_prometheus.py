"""Prometheus checks against a real Prometheus server with backfilled, deterministic data."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from scipy import special

from analyzer.analysis import promchecks
from analyzer.cli import main
from analyzer.config import (
    LoadedRule,
    PrometheusCheckSpec,
    PrometheusSpec,
    load_rules,
    parse_rule_text,
)
from analyzer.notify.base import NoopNotifier
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.runtime.wiring import without_log_readers
from analyzer.sources.prometheus import PrometheusSource, render, template_context
from tests.ranks import weighted_mannwhitney
from tests.servers.daemon import start_daemon
from tests.servers.kubeapi import KubeApi
from tests.servers.promserver import BOUNDS, PrometheusServer, free_port
from tests.servers.receiver import Answer, Receiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


RULE = """\
apiVersion: canary-analyzer.io/v1alpha1
kind: CanaryRule
metadata: {{name: {name}}}
spec:
  target:
    kind: InferenceModel
    apiVersion: inference.networking.x-k8s.io/v1alpha2
    name: im
    file: manifest.yaml
  model: {model}
  baseline: [b1, b2]
  canary: [c1]
  steps: [10, 50, 100]
  analysis: {{interval: 10s, minStepDuration: 60s, maxStepDuration: 30m, minSamples: 50}}
  prometheus: {{address: "{url}", timeout: 2s}}
  checks:
{checks}
"""


def rule(url: str, model: str, checks: str, name: str = "r") -> LoadedRule:
    text = RULE.format(url=url, model=model, checks=checks, name=name)
    rules, errors, lines = parse_rule_text(text, "rule.yaml")
    assert errors == [], [str(e) for e in errors]
    return LoadedRule(rules[0], Path("rule.yaml"), lines[0])


def check(**fields: object) -> PrometheusCheckSpec:
    return PrometheusCheckSpec.model_validate({"name": "c", "source": "prometheus", **fields})


def run_check(
    prom: PrometheusServer,
    model: str,
    spec: PrometheusCheckSpec,
    now: float,
    step_start: float,
    min_samples: int = 50,
) -> promchecks.CheckResult:
    loaded = rule(prom.url, model, "    - {name: x, metric: ttft, test: mann-whitney}")
    source = PrometheusSource(PrometheusSpec(address=prom.url, timeout=2))

    async def go() -> promchecks.CheckResult:
        outs = await source.outcomes(spec, loaded.rule.spec, step_start, now)
        return promchecks.evaluate(spec, outs, min_samples)

    return asyncio.run(go())


def test_threshold_passes_and_fails_on_known_data(prom: PrometheusServer) -> None:
    end = prom.data.end
    # The test server has only the pre-rename name: the preset's fallback reads it.
    assert "vllm:kv_cache_usage_perc" in (check(preset="vllm-kv-cache", max=1).resolved_query or "")
    ok = run_check(prom, "m", check(preset="vllm-kv-cache", max=0.99), end, end - 600)
    assert ok.status == "pass" and ok.effect == pytest.approx(0.95)
    hot = run_check(prom, "m", check(preset="vllm-kv-cache", max=0.9), end, end - 600)
    assert hot.status == "fail" and "above max 0.9" in hot.reason
    low = run_check(
        prom,
        "m",
        check(test="threshold", query="min(vllm:gpu_cache_usage_perc)", min=0.7),
        end,
        end - 600,
    )
    assert low.status == "fail" and "below min" in low.reason


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("vllm:gpu_cache_usage_perc", "inconclusive", "2 series where one was expected"),
        ('max(vllm:gpu_cache_usage_perc{pod="zz"})', "nodata", "no series"),
        ("sum(rate(vllm:gpu_cache_usage_perc[5m])) / 0 * 0", "nodata", "NaN"),
        ("max(vllm:gpu_cache_usage_perc", "inconclusive", "query failed"),
    ],
)
def test_query_problems_are_explained_never_a_pass(
    prom: PrometheusServer, query: str, status: str, reason: str
) -> None:
    end = prom.data.end
    r = run_check(prom, "m", check(test="threshold", query=query, max=1.0), end, end - 600)
    assert r.status == status and reason in r.reason


def test_unreachable_prometheus_is_nodata() -> None:
    port_url = "http://127.0.0.1:9"  # discard port: nothing listens
    spec = check(preset="vllm-kv-cache", max=0.9)
    source = PrometheusSource(PrometheusSpec(address=port_url, timeout=1))
    outs = asyncio.run(
        source.outcomes(
            spec,
            rule(port_url, "m", "    - {name: x, metric: ttft, test: mann-whitney}").rule.spec,
            0.0,
            1795660000.0,
        )
    )
    r = promchecks.evaluate(spec, outs, 50)
    assert r.status == "nodata" and "unreachable" in r.reason


def test_relative_error_rate_catches_five_times_the_baseline(prom: PrometheusServer) -> None:
    end = prom.data.end
    spec = check(preset="epp-error-rate", tolerance=0.01)
    slow = run_check(prom, "slow-model", spec, end, end - 900)
    assert slow.status == "fail" and slow.effect_kind == "difference"
    assert 0.025 < (slow.effect or 0) < 0.06
    aa = run_check(prom, "aa-model", spec, end, end - 900)
    assert aa.status == "pass" and abs(aa.effect or 1) < 0.01
    ratio = run_check(
        prom,
        "slow-model",
        check(preset="epp-error-rate", compare="ratio", tolerance=1.0),
        end,
        end - 900,
    )
    assert ratio.status == "fail" and 3.5 < (ratio.effect or 0) < 7


def test_histogram_check_catches_a_slow_canary_and_passes_aa(prom: PrometheusServer) -> None:
    end = prom.data.end
    spec = check(preset="epp-ttft", tolerance=0.1, mode="fixed")
    slow = run_check(prom, "slow-model", spec, end, end - 900)
    assert slow.p_value is not None and slow.p_value < 1e-5
    assert slow.settle(slow.p_value).status == "fail"
    assert 1.25 < (slow.effect or 0) < 1.6 and slow.ci[0] > 1.1  # the interval decides
    aa = run_check(prom, "aa-model", spec, end, end - 900)
    assert aa.p_value is not None and aa.p_value > 0.05
    assert aa.settle(aa.p_value).status == "pass" and aa.ci[1] < 1.1
    seq = run_check(prom, "slow-model", check(preset="epp-ttft", tolerance=0.1), end, end - 900)
    assert seq.method == "sequential/binned-buckets" and (seq.p_value or 1) < 0.01


def test_tail_check_on_buckets_catches_a_slow_tail_and_passes_aa(prom: PrometheusServer) -> None:
    """p95 exceedance on the endpoint picker's TTFT buckets, queried from a real Prometheus:
    the shares are those of the exact bucket increases above the pooled p95's bucket."""
    end = prom.data.end
    start = end - 900
    spec = check(preset="epp-ttft", test="exceedance", quantile=0.95, tolerance=0.02)
    slow = run_check(prom, "slow-model", spec, end, start)
    settled = slow.settle(slow.p_value or 1)
    assert settled.status == "fail" and slow.ci is not None and slow.ci[0] > 0.02
    base = prom.data.increments("slow-model", ["b1", "b2"], start, end)
    can = prom.data.increments("slow-model", ["c1"], start, end)
    at = int(np.searchsorted(np.cumsum(base + can), math.ceil(0.95 * (base + can).sum())))
    exact = can[at + 1 :].sum() / can.sum() - base[at + 1 :].sum() / base.sum()
    assert slow.effect == pytest.approx(exact, abs=0.01)  # increase() extrapolates a little
    aa = run_check(prom, "aa-model", spec, end, start)
    assert aa.settle(aa.p_value or 1).status == "pass" and aa.ci is not None
    assert aa.ci[1] < 0.02


def test_histogram_check_agrees_with_the_stats_core(prom: PrometheusServer) -> None:
    """Exact bucket increases (no increase() extrapolation) give the core's U to 1e-12.

    The check's variance ignores ties (each bucket is one large tie group), which is
    conservative: its p is never below the tie-corrected test's.
    """
    end = prom.data.end
    start = end - 900
    query = (
        'sum by (le) (llm_d_epp_request_ttft_seconds_bucket{model_name="slow-model",'
        'target_model_name=~"{{ group_regex }}"}) - sum by (le) '
        '(llm_d_epp_request_ttft_seconds_bucket{model_name="slow-model",'
        'target_model_name=~"{{ group_regex }}"} offset 900s)'
    )
    spec = check(test="mann-whitney", query=query, tolerance=0.1, mode="fixed")
    got = run_check(prom, "slow-model", spec, end, start)
    base = prom.data.increments("slow-model", ["b1", "b2"], start, end)
    can = prom.data.increments("slow-model", ["c1"], start, end)
    bounds = np.array(BOUNDS)
    kb, kc = base > 0, can > 0
    u, _, tied_p = weighted_mannwhitney(bounds[kc], can[kc], bounds[kb] * 1.1, base[kb], "greater")
    n1, n2 = int(can.sum()), int(base.sum())
    z = (u / (n1 * n2) - 0.5) * math.sqrt(12 * n1 * n2 / (n1 + n2 + 1))
    assert got.n_baseline == n2 and got.n_canary == n1
    assert got.p_value == pytest.approx(float(special.ndtr(-z)), rel=1e-9)
    assert got.p_value >= tied_p


def test_template_rendering() -> None:
    loaded = rule(
        "http://x:9090", "lora-request", "    - {name: x, metric: ttft, test: mann-whitney}"
    )
    ctx = template_context(loaded.rule.spec, 1000.0, 1095.2)
    q = render('x{m="{{ model }}",t=~"{{canary_regex}}"}[{{ step_duration }}] {{ interval }}', ctx)
    assert q == 'x{m="lora-request",t=~"c1"}[96s] 10s'
    assert ctx["baseline_regex"] == "b1|b2" and ctx["step_start"] == "1000"


def test_unknown_template_variable_is_refused() -> None:
    _, errors, _ = parse_rule_text(
        RULE.format(
            url="http://x",
            model="m",
            name="r",
            checks="    - {name: q, source: prometheus, test: threshold, max: 1, "
            "query: 'up{job=\"{{ jobb }}\"}'}",
        ),
        "r.yaml",
    )
    assert any("unknown template variable(s) jobb" in e.message for e in errors)
    _, errors, _ = parse_rule_text(
        RULE.format(
            url="http://x",
            model="m",
            name="r",
            checks="    - {name: q, source: prometheus, preset: vllm-queue}",
        ),
        "r.yaml",
    )
    assert any("needs min, max" in e.message for e in errors)


def test_prometheus_outage_holds_the_rollout_and_it_resumes(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\n"
        "metadata: {name: im}\nspec:\n  modelName: aa-model\n  poolRef: {name: pool}\n"
        "  targetModels:\n  - {name: b1, weight: 1}\n  - {name: b2, weight: 1}\n"
    )
    checks = (
        "    - {name: ttft, source: prometheus, preset: epp-ttft}\n"
        "    - {name: errors, source: prometheus, preset: epp-error-rate, tolerance: 0.01}"
    )
    loaded = rule(prom.url, "aa-model", checks)
    loaded = LoadedRule(loaded.rule, tmp_path / "rule.yaml", 1)
    controller = RolloutController(
        loaded,
        make_router(loaded),
        NoopNotifier(),
        prometheus=PrometheusSource(loaded.rule.spec.prometheus),  # type: ignore[arg-type]
    )
    engine = Engine([controller])
    t0 = float(prom.data.start + 300)

    async def go() -> list[str]:
        await engine.start(t0)
        await engine.advance(t0 + 40)  # Prometheus up, but the step is young
        prom.stop()
        await engine.advance(t0 + 200)  # well past minStepDuration: holds on nodata
        held = controller.state.step if controller.state else -1
        assert controller.last_verdict is not None
        assert controller.last_verdict.status == "nodata"
        assert all("unreachable" in c.reason for c in controller.last_verdict.checks)
        prom.start()
        # A live daemon advances on the wall clock every loop; one advance over a gap is one
        # judgment (tests/integration/test_event_time.py), so walk the interval grid here.
        for now in range(int(t0) + 210, int(t0) + 401, 10):
            await engine.advance(float(now))
        assert held == 0
        await engine.close()
        return [d.action for d in controller.decisions]

    actions = asyncio.run(go())
    # An early look on a few seconds of traffic may fail the (non-statistical) relative check
    # once; failureThreshold 2 absorbs it. No step is taken while Prometheus is down.
    assert actions[0] == "start" and "rollback" not in actions
    assert "advance" in actions and controller.state is not None
    assert controller.state.phase == "Succeeded"
    assert shutil.which("prometheus")


def test_auth_options_reach_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bearer token from a file and basic auth from env, as a Prometheus behind a proxy sees."""
    vector = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]}]},
    }
    token = tmp_path / "token"
    token.write_text("prom-token\n")
    monkeypatch.setenv("CA_TEST_PROM_PASSWORD", "hunter2")
    spec = check(preset="vllm-kv-cache", max=0.9)
    with Receiver(default=Answer(json=vector)) as rx:
        for extra, expected in (
            ({"bearerToken": {"file": str(token)}}, "Bearer prom-token"),
            (
                {"basicAuth": {"username": "ops", "password": {"env": "CA_TEST_PROM_PASSWORD"}}},
                "Basic b3BzOmh1bnRlcjI=",
            ),
        ):
            source = PrometheusSource(
                PrometheusSpec.model_validate({"address": rx.url(""), **extra})
            )
            outs = asyncio.run(source.query("max(vllm:gpu_cache_usage_perc)", 1795660000.0))
            assert promchecks.evaluate(spec, [outs], 50).status == "pass"
            assert rx.requests[-1].headers["Authorization"] == expected
            assert rx.requests[-1].path == "/api/v1/query"


PROMETHEUS_ONLY = """\
apiVersion: canary-analyzer.io/v1alpha1
kind: CanaryRule
metadata: {{name: {name}}}
spec:
  target: {{kind: InferenceModel, apiVersion: inference.networking.x-k8s.io/v1alpha2, name: {obj}}}
  model: {model}
  baseline: [b1, b2]
  canary: [c1]
  steps: [50, 100]
  analysis: {{interval: 1s, minStepDuration: 2s, maxStepDuration: 60s, minSamples: 50,
             warmup: 0s, failureThreshold: 2}}
  prometheus: {{address: "{url}", timeout: 2s}}
  checks:
    # Pinned with @ to the backfilled data: the daemon judges on the wall clock, long after it.
    - name: errors
      source: prometheus
      test: relative
      compare: difference
      tolerance: 0.01
      query: >-
        sum(increase(llm_d_epp_request_error_total{{model_name="{{{{ model }}}}",
        target_model_name=~"{{{{ group_regex }}}}"}}[15m] @ {end}))
        / sum(increase(llm_d_epp_request_total{{model_name="{{{{ model }}}}",
        target_model_name=~"{{{{ group_regex }}}}"}}[15m] @ {end}))
"""


OBJECT_API = "inference.networking.x-k8s.io/v1alpha2"


def _object(name: str, model: str) -> dict[str, object]:
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "modelName": model,
            "poolRef": {"name": "pool"},
            "targetModels": [{"name": "b1", "weight": 1}, {"name": "b2", "weight": 1}],
        },
    }


def test_a_prometheus_only_rule_set_runs_in_the_daemon_without_kafka(
    prom: PrometheusServer, tmp_path: Path
) -> None:
    """The llm-d / GIE >= 1.5 path: no access log says which adapter served a request, the
    endpoint picker's per-target_model_name series do; no --kafka, no broker anywhere."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, obj, model in (("aa", "im-aa", "aa-model"), ("slow", "im-slow", "slow-model")):
        text = PROMETHEUS_ONLY.format(
            name=name, obj=obj, model=model, url=prom.url, end=prom.data.end
        )
        (rules / f"{name}.yaml").write_text(text)
    with KubeApi() as api:
        api.put(_object("im-aa", "aa-model"))
        api.put(_object("im-slow", "slow-model"))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        port = free_port()
        proc = start_daemon(None, rules, kubeconfig, port)

        def phase(obj: str, rule_name: str) -> str | None:
            return phase_of(api.get(OBJECT_API, "InferenceModel", obj), rule_name)

        try:
            for _ in range(600):  # a bound on a hang, not a speed target
                if phase("im-aa", "aa") == "Succeeded" and phase("im-slow", "slow") == "RolledBack":
                    break
                time.sleep(0.1)
            ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        aa = api.get(OBJECT_API, "InferenceModel", "im-aa")
        slow = api.get(OBJECT_API, "InferenceModel", "im-slow")
    assert proc.returncode == 0, err.decode()[-3000:]
    assert phase_of(aa, "aa") == "Succeeded", out.decode()[-3000:]
    assert phase_of(slow, "slow") == "RolledBack", out.decode()[-3000:]
    assert aa["spec"]["targetModels"] == [{"name": "c1", "weight": 100}]
    assert slow["spec"]["targetModels"] == [
        {"name": "b1", "weight": 1},
        {"name": "b2", "weight": 1},
    ]
    assert "judging on the wall clock" in out.decode()
    assert ready.status_code == 200 and "kafka" not in ready.text
    assert "canary_analyzer_kafka_consumer_lag" not in metrics


def phase_of(obj: dict[str, Any], rule_name: str) -> str | None:
    raw = obj["metadata"].get("annotations", {}).get(annotation_key(rule_name))
    return RolloutState.loads(raw).phase if raw else None


def test_run_without_a_log_refuses_rules_that_read_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule_file = tmp_path / "r.yaml"
    text = RULE.format(
        url="http://127.0.0.1:9",
        model="m",
        name="reads-log",
        checks="    - {name: x, metric: ttft, test: mann-whitney}",
    )
    rule_file.write_text(text.replace("    file: manifest.yaml\n", ""))
    assert main(["run", "--rules", str(rule_file)]) == 2
    err = capsys.readouterr().err
    assert "rule reads-log has access-log checks" in err and "restart it with --kafka" in err
    assert "--events FILE|-" in err
    # the same refusal on a hot reload, which keeps the other rules (runtime/daemon.py)
    loaded = load_rules([rule_file])[0]
    prometheus_only = rule(
        "http://127.0.0.1:9", "m", "    - {name: e, source: prometheus, preset: epp-error-rate}"
    )
    kept, refused = without_log_readers([*loaded, prometheus_only], reads_log=False)
    assert kept == [prometheus_only] and len(refused) == 1 and "reads-log" in refused[0]
    assert without_log_readers(loaded, reads_log=True) == (loaded, [])


@pytest.mark.parametrize(("steps", "paused"), [("[50, 100]", True), ("[10, 50, 100]", False)])
def test_rewrite_decisions_that_do_not_follow_the_weights_pause_the_rollout(
    prom: PrometheusServer, tmp_path: Path, steps: str, paused: bool
) -> None:
    """A rule with only Prometheus checks has no access log to count the canary's share in:
    the endpoint picker's rewrite decisions say where the requests went. The backfilled
    picker sent c1 2 of every 22 requests (9%): right for a 10% step, not for a 50% one."""
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\n"
        "metadata: {name: im}\nspec:\n  modelName: aa-model\n  poolRef: {name: pool}\n"
        "  targetModels:\n  - {name: b1, weight: 1}\n  - {name: b2, weight: 1}\n"
    )
    checks = "    - {name: errors, source: prometheus, preset: epp-error-rate, tolerance: 0.01}"
    text = RULE.format(url=prom.url, model="aa-model", checks=checks, name="r")
    rules, errors, lines = parse_rule_text(text.replace("[10, 50, 100]", steps), "rule.yaml")
    assert errors == []
    loaded = LoadedRule(rules[0], tmp_path / "rule.yaml", lines[0])
    source = PrometheusSource(loaded.rule.spec.prometheus)  # type: ignore[arg-type]
    controller = RolloutController(
        loaded, make_router(loaded), NoopNotifier(), prometheus=source, traffic_follows=True
    )
    engine = Engine([controller])
    t0 = float(prom.data.start + 300)

    async def go() -> None:
        await engine.start(t0)
        for now in range(int(t0) + 10, int(t0) + 61, 10):
            await engine.advance(float(now))
        await engine.close()

    asyncio.run(go())
    assert controller.state is not None
    assert (controller.state.phase == "Paused") is paused
    if paused:
        reason = controller.decisions[-1].reason
        got = re.search(r"in the endpoint picker's rewrite decisions it got ([\d.]+)%", reason)
        assert got is not None and 5 < float(got.group(1)) < 15, reason
        assert "the weights give the canary 50.0%" in reason
