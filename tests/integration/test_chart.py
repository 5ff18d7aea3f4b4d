"""The Helm chart: lint under real Helm (helm-sdkpy, Python >= 3.12, prepared by
scripts/test.sh), values against values.schema.json, and the RBAC, Deployment and dashboard
as written. helm-sdkpy has no template rendering, so templates are checked as text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "canary-analyzer"
LINT = """
import asyncio, json, sys, helm_sdkpy
result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(sys.argv[1]))
print(json.dumps(result))
"""


def _lint(chart: Path) -> dict:  # type: ignore[type-arg]
    python = os.environ.get("CANARY_HELM_PYTHON") or str(ROOT / ".venv-helm" / "bin" / "python")
    assert Path(python).exists(), "no Python with helm-sdkpy: run the suite via scripts/test.sh"
    out = subprocess.run(
        [python, "-c", LINT, str(chart)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_chart_lints_clean_and_lint_can_fail(tmp_path: Path) -> None:
    result = _lint(CHART)
    assert result["Errors"] is None
    assert all(m["Severity"] <= 1 for m in result["Messages"])  # info only (no icon)
    broken = tmp_path / "canary-analyzer"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    assert _lint(broken)["Errors"]


def _values() -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load((CHART / "values.yaml").read_text())  # type: ignore[no-any-return]


def test_values_match_their_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    values = _values()
    assert list(validator.iter_errors(values)) == []
    for bad in (
        {"replicaCount": 0},
        {"kafka": {"topics": "t"}},
        {"secretEnv": [{"name": "slack url", "secretName": "s", "secretKey": "k"}]},
    ):
        assert list(validator.iter_errors({**values, **bad})), bad


def test_rbac_is_least_privilege() -> None:
    text = (CHART / "templates" / "rbac.yaml").read_text()
    rules = re.findall(
        r"apiGroups: \[(.*?)\]\s+resources: \[(.*?)\]\s+(?:resourceNames: \[(.*?)\]\s+)?"
        r"verbs: \[(.*?)\]",
        text,
    )
    grants = {(g, r, v) for g, r, _, v in rules}
    named = {v: n for _, r, n, v in rules if r == '"leases"'}
    lease = "{{ .Values.leaderElection.leaseName | quote }}"
    assert named == {'"create"': "", '"get", "update"': lease}  # only the release's Lease
    assert grants == {
        (
            '"inference.networking.x-k8s.io"',
            '"inferencemodels", "inferencemodelrewrites"',
            '"get", "list", "watch", "patch"',
        ),
        ('"llm-d.ai"', '"inferencemodelrewrites"', '"get", "list", "watch", "patch"'),
        ('""', '"events"', '"create"'),
        ('"coordination.k8s.io"', '"leases"', '"create"'),
        ('"coordination.k8s.io"', '"leases"', '"get", "update"'),
    }
    assert "ClusterRole" not in text and "*" not in "".join(v for *_, v in rules)


def test_deployment_is_hardened_and_probed() -> None:
    values = _values()
    assert values["replicaCount"] == 2
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    text = (CHART / "templates" / "deployment.yaml").read_text()
    for needle in (
        "path: /healthz",
        "path: /readyz",
        ".Values.securityContext",
        ".Values.podSecurityContext",
        "readOnly: true",
        "mountPath: /tmp",
        "--kafka",
        "secretKeyRef",
        "POD_NAMESPACE",
    ):
        assert needle in text, needle


def test_dashboard_queries_metrics_that_exist() -> None:
    dashboard = json.loads((CHART / "dashboards" / "canary-analyzer.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    ours = set(re.findall(r"canary_analyzer_[a-z_]+", " ".join(exprs)))
    exported = set(
        re.findall(
            r'"(canary_analyzer_[a-z_]+)"', (ROOT / "analyzer" / "runtime" / "http.py").read_text()
        )
    )
    counters = {n + "_total" for n in exported}
    assert ours and ours <= exported | counters, ours - exported - counters
    assert any("llm_d_epp_request_ttft_seconds_bucket" in e for e in exprs)
    assert any("vllm:" in e for e in exprs)
