"""The CRD validator the router tests rely on refuses what a real API server refuses."""

from tests.servers.crd import validate

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
