"""The CRD validator the router tests rely on refuses what a real API server refuses."""

import copy
from typing import Any

from ruamel.yaml import YAML

from tests.servers import cel_gateway
from tests.servers.crd import CRD_DIR, default, validate

V1A2 = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "im"},
    "spec": {
        "modelName": "m",
        "poolRef": {"name": "pool"},
        "targetModels": [{"name": "a", "weight": 1}],
    },
}


def test_accepts_a_valid_object() -> None:
    assert validate(V1A2) == []


def test_refuses_zero_weight_eleven_targets_mixed_weights_and_renames() -> None:
    zero = {**V1A2, "spec": {**V1A2["spec"], "targetModels": [{"name": "a", "weight": 0}]}}
    assert validate(zero)
    eleven = {
        **V1A2,
        "spec": {
            **V1A2["spec"],
            "targetModels": [{"name": f"a{i}", "weight": 1} for i in range(11)],
        },
    }
    assert validate(eleven)
    mixed = {
        **V1A2,
        "spec": {**V1A2["spec"], "targetModels": [{"name": "a", "weight": 1}, {"name": "b"}]},
    }
    assert any("Weights should be set" in e for e in validate(mixed))
    renamed = {**V1A2, "spec": {**V1A2["spec"], "modelName": "other"}}
    assert any("immutable" in e for e in validate(renamed, old=V1A2))
    v1a1_zero = {**zero, "apiVersion": "inference.networking.x-k8s.io/v1alpha1"}
    assert validate(v1a1_zero) == []
    assert validate({**V1A2, "apiVersion": "inference.networking.x-k8s.io/v9"})


ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "r"},
    "spec": {
        "parentRefs": [{"name": "gw"}],
        "rules": [
            {
                "backendRefs": [
                    {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "p"}
                ]
            }
        ],
    },
}


def _route(**rule: object) -> dict[str, object]:
    base = ROUTE["spec"]["rules"][0]  # type: ignore[index]
    return {**ROUTE, "spec": {**ROUTE["spec"], "rules": [{**base, **rule}]}}  # type: ignore[dict-item]


def test_httproute_defaults_are_filled_in_as_the_api_server_does() -> None:
    obj = default(copy.deepcopy(ROUTE))
    assert validate(obj) == []
    rule = obj["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"][0]["weight"] == 1
    assert obj["spec"]["parentRefs"][0] == {
        "name": "gw",
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
    }


def test_httproute_schema_and_cel_rules_refuse_what_the_api_server_refuses() -> None:
    pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool"}
    too_many = _route(backendRefs=[{**pool, "name": f"p{i}"} for i in range(17)])
    assert validate(default(too_many))
    heavy = _route(backendRefs=[{**pool, "name": "p", "weight": 1_000_001}])
    assert validate(default(heavy))
    no_port = _route(backendRefs=[{"name": "svc"}])
    assert "Must have port for Service reference" in " ".join(validate(default(no_port)))
    bad_path = _route(matches=[{"path": {"type": "PathPrefix", "value": "/v1//x"}}])
    assert "must not contain '//'" in " ".join(validate(default(bad_path)))
    twice = {**ROUTE, "spec": {**ROUTE["spec"], "parentRefs": [{"name": "gw"}, {"name": "gw"}]}}
    assert "sectionName must be unique" in " ".join(validate(default(twice)))
    with_port = _route(backendRefs=[{"name": "svc", "port": 80, "weight": 0}])
    assert validate(default(with_port)) == []


def test_every_cel_rule_of_the_httproute_crd_is_implemented() -> None:
    """An unknown rule fails loudly (tests/servers/crd.py): none is left unknown."""
    crd = YAML(typ="safe").load(
        (CRD_DIR / "httproutes.gateway.v1.gateway-api-v1.6.1.yaml").read_text()
    )
    messages: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        messages.update(r["message"] for r in node.get("x-kubernetes-validations", []))
        for sub in node.get("properties", {}).values():
            walk(sub)
        if "items" in node:
            walk(node["items"])

    for version in crd["spec"]["versions"]:
        walk(version["schema"]["openAPIV3Schema"])
    assert len(messages) == 50 and messages <= set(cel_gateway.RULES)
    rewrite = _route(
        matches=[{"path": {"type": "PathPrefix", "value": "/v1"}}],
        filters=[{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath"}}}],
    )
    assert "replaceFullPath must be specified" in " ".join(validate(default(rewrite)))
