"""HTTPRoute backendRefs as the targets of a pool-level canary, and the target ``pattern``
that reads the pool from an Envoy cluster name."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from analyzer.config import EventsSpec, parse_rule_text
from analyzer.events.batchparser import BatchParser
from analyzer.events.lineparser import EventParser
from analyzer.rollout.weights import WeightError, check_groups, limits_for, split
from analyzer.routers.base import RouterError
from analyzer.routers.objects import inconsistency, read_targets, refusal, write_targets
from analyzer.simulator.gateway import istio_cluster
from tests.servers.crd import default, validate

POOL = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}
POOLS = ("pool-a", "pool-b")


def _route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "llm", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "name": "completions",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1/completions"}}],
                    "backendRefs": [{**POOL, "name": "pool-a", "port": 8000}],
                },
                {
                    "name": "chat",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1/chat"}}],
                    "backendRefs": [{**POOL, "name": "pool-a", "weight": 1}],
                },
                {
                    "name": "health",
                    "matches": [{"path": {"type": "Exact", "value": "/health"}}],
                    "backendRefs": [{"name": "health", "port": 8080, "weight": 7}],
                },
            ],
        },
    }


def _read(doc: dict[str, Any], rule_name: str | None = None) -> tuple[Any, ...]:
    return read_targets(doc, "HTTPRoute", "m", "route", pools=POOLS, rule_name=rule_name)


def _write(doc: dict[str, Any], targets: Any, rule_name: str | None = None) -> None:
    write_targets(doc, "HTTPRoute", "m", "route", targets, pools=POOLS, rule_name=rule_name)


def test_the_rules_routing_the_pools_are_read_with_the_gateway_api_default_weight() -> None:
    # "completions" has no weight: Gateway API's default is 1, as "chat" says explicitly
    assert _read(_route()) == (("pool-a", 1),)
    assert _read(_route(), rule_name="health") == (("Service/health", 7),)


def test_a_write_moves_every_routing_rule_together_and_keeps_the_rest() -> None:
    doc = _route()
    health = copy.deepcopy(doc["spec"]["rules"][2])
    targets = split(_read(doc), ["pool-a"], ["pool-b"], 25, limits_for("HTTPRoute", "x/v1"))
    assert targets == [("pool-a", 75), ("pool-b", 25)]
    _write(doc, targets)
    completions, chat, after = doc["spec"]["rules"]
    assert completions["backendRefs"] == [
        {**POOL, "name": "pool-a", "port": 8000, "weight": 75},
        {**POOL, "name": "pool-b", "port": 8000, "weight": 25},  # a copy of the pool entry
    ]
    assert [(r["name"], r["weight"]) for r in chat["backendRefs"]] == [
        ("pool-a", 75),
        ("pool-b", 25),
    ]
    assert after == health
    assert _read(doc) == (("pool-a", 75), ("pool-b", 25))
    # 0 is a valid backendRef weight: a rollback keeps the canary listed, with no traffic
    rollback = split(_read(doc), ["pool-a"], ["pool-b"], 0, limits_for("HTTPRoute", "x/v1"))
    _write(doc, rollback)
    assert _read(doc) == (("pool-a", 100), ("pool-b", 0))
    assert validate(default(doc)) == []


def test_rules_that_disagree_or_name_other_backends_are_refused_with_the_fix() -> None:
    doc = _route()
    assert inconsistency(doc, "HTTPRoute", "route", pools=POOLS) is None
    doc["spec"]["rules"][1]["backendRefs"][0]["weight"] = 3
    why = inconsistency(doc, "HTTPRoute", "route", pools=POOLS)
    assert why is not None
    assert "disagree (rule 'chat': pool-a=3)" in why and "target.ruleName" in why
    assert _read(doc) == (("pool-a", 1),)  # the first way; the controller sees ``why``
    assert _read(doc, rule_name="chat") == (("pool-a", 3),)
    assert inconsistency(doc, "HTTPRoute", "route", pools=POOLS, rule_name="chat") is None
    with pytest.raises(RouterError, match=r"no rule named 'nope'.*completions, chat, health"):
        _read(doc, rule_name="nope")
    mixed = _route()
    mixed["spec"]["rules"][0]["backendRefs"].append({"name": "legacy-svc", "port": 80})
    mixed["spec"]["rules"][1]["backendRefs"].append({"name": "legacy-svc", "port": 80})
    with pytest.raises(WeightError, match="Service/legacy-svc, which is in neither group"):
        check_groups(_read(mixed), ["pool-a"], ["pool-b"])
    with pytest.raises(RouterError, match="no rule with a backendRef to an InferencePool"):
        read_targets(_route(), "HTTPRoute", "m", "route", pools=("other",))


def test_rule_name_and_the_target_limit_are_checked_per_kind() -> None:
    text = """
apiVersion: canary-analyzer.io/v1alpha1
kind: CanaryRule
metadata: {name: r}
spec:
  target: {kind: KIND, apiVersion: API, name: o, ruleName: chat}
  model: m
  baseline: [BASE]
  canary: [c]
  steps: [50, 100]
"""

    def errors(kind: str, api: str, base: str = "b") -> list[str]:
        doc = text.replace("KIND", kind).replace("API", api).replace("BASE", base)
        return [str(e) for e in parse_rule_text(doc, "r.yaml")[1]]

    assert errors("HTTPRoute", "gateway.networking.k8s.io/v1") == []
    refused = errors("InferenceModel", "inference.networking.x-k8s.io/v1alpha2")
    assert len(refused) == 1 and "ruleName selects a rule of an HTTPRoute" in refused[0]
    fifteen = ", ".join(f"b{i}" for i in range(15))
    assert errors("HTTPRoute", "gateway.networking.k8s.io/v1", fifteen) == []  # 16 backendRefs
    twelve = ", ".join(f"b{i}" for i in range(12))
    text = text.replace(", ruleName: chat", "")
    over = errors("InferenceModel", "inference.networking.x-k8s.io/v1alpha2", twelve)
    assert len(over) == 1 and "exceed 10 targets (the InferenceModel maximum)" in over[0]


ISTIO = r"^outbound\|\d*\|[^|]*\|(.+)-ip-[0-9a-f]{8}\."


def _spec(pattern: str | None) -> EventsSpec:
    target: dict[str, Any] = {"path": "upstream_cluster"}
    if pattern is not None:
        target["pattern"] = pattern
    return EventsSpec.model_validate({"preset": "envoy-json", "fields": {"target": target}})


def _line(cluster: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "start_time": "2026-11-26T03:00:00Z",
            "model": "m",
            "upstream_cluster": cluster,
            "response_code": 200,
            "response_duration": 120 + i,
            "request_id": str(i),
        }
    )


def test_the_pattern_reads_the_pool_from_istios_cluster_name_in_both_parsers() -> None:
    lines = [
        _line(istio_cluster("pool-a", "default"), 0),
        _line(istio_cluster("pool-b", "serving", port=54321), 1),
        _line("outbound|8000||some-service.default.svc.cluster.local", 2),  # not a pool
        _line(istio_cluster("pool-a", "default"), 3),
    ]
    per_line = EventParser(_spec(ISTIO), ["m"])
    names = [e.target for e in map(per_line.parse_line, lines) if e is not None]
    assert names == [
        "pool-a",
        "pool-b",
        "outbound|8000||some-service.default.svc.cluster.local",
        "pool-a",
    ]
    batch = BatchParser(EventParser(_spec(ISTIO), ["m"]))
    cols = batch.parse(lines)
    labels = cols.labels.names()
    assert [labels[c] for c in cols.target.tolist()] == names
    plain = EventParser(_spec(None), ["m"]).parse_line(lines[0])
    assert plain is not None and plain.target.startswith("outbound|8000||pool-a-ip-")


def test_a_pattern_must_have_one_group_and_only_on_the_target() -> None:
    with pytest.raises(ValueError, match="exactly one capture group"):
        _spec(r"outbound\|(\d+)\|\|(.+)")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        _spec(r"(unclosed")
    with pytest.raises(ValueError, match="target field only, not model"):
        EventsSpec.model_validate(
            {"preset": "envoy-json", "fields": {"model": {"path": "m", "pattern": "(x)"}}}
        )


def _condition(kind: str, status: str, generation: int, reason: str = "R") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "m",
        "observedGeneration": generation,
        "lastTransitionTime": "2026-12-07T00:00:00Z",
    }


def test_a_condition_false_for_the_current_generation_is_a_refusal() -> None:
    route = _route()
    route["metadata"]["generation"] = 3
    gateway = {"controllerName": "istio.io/gateway-controller", "parentRef": {"name": "gw"}}
    route["status"] = {
        "parents": [
            {**gateway, "conditions": [_condition("Accepted", "True", 3)]},
        ]
    }
    assert refusal(route, "HTTPRoute", "route") is None
    route["status"]["parents"][0]["conditions"].append(
        _condition("ResolvedRefs", "False", 3, "BackendNotFound")
    )
    why = refusal(route, "HTTPRoute", "route")
    assert why == "route: istio.io/gateway-controller: ResolvedRefs=False (BackendNotFound): m"
    route["metadata"]["generation"] = 4  # written since: that answer is about older weights
    assert refusal(route, "HTTPRoute", "route") is None
    model = {
        "metadata": {"generation": 2},
        "status": {"conditions": [_condition("Ready", "False", 2)]},
    }
    assert refusal(model, "InferenceModel", "im") == "im: Ready=False (R): m"
    model["status"]["conditions"] = [_condition("Ready", "Unknown", 2)]  # the CRD's default
    assert refusal(model, "InferenceModel", "im") is None


def test_an_alpha_inferencepool_is_a_pool_too() -> None:
    doc = _route()
    for rule in doc["spec"]["rules"][:2]:
        rule["backendRefs"][0]["group"] = "inference.networking.x-k8s.io"  # GIE < 1.0
    assert _read(doc) == (("pool-a", 1),)
    doc["spec"]["rules"][0]["backendRefs"][0]["group"] = "example.com"
    with pytest.raises(WeightError, match="baseline adapters not targeted by the object: pool-a"):
        check_groups(_read(doc, rule_name="completions"), ["pool-a"], ["pool-b"])
    assert _read(doc, rule_name="completions") == (("InferencePool/pool-a", 1),)
