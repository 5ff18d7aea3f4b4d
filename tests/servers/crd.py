"""Validate objects the daemon writes against the upstream CRDs (tests/crds, copied unchanged
from ../shared/crds): the openAPIV3Schema with jsonschema, and the CEL validation rules that
these CRDs use, implemented here one by one (HTTPRoute's in cel_gateway.py). An unknown rule
fails loudly instead of passing. ``default`` fills in the schema's defaults, as the API server
does before it validates and stores an object."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML

from tests.servers import cel_gateway

CRD_DIR = Path(__file__).parents[1] / "crds"

Rule = Callable[[Any, Any], bool]
KNOWN_RULES: dict[str, Rule] = {
    "self == oldSelf": lambda new, old: old is None or new == old,
    "self.all(model, has(model.weight)) || self.all(model, !has(model.weight))": (
        lambda new, old: all("weight" in m for m in new) or all("weight" not in m for m in new)
    ),
    "self.all(p1, self.exists_one(p2, p1.number==p2.number))": (
        lambda new, old: all(
            sum(p2.get("number") == p1.get("number") for p2 in new) == 1 for p1 in new
        )
    ),
    "self.kind != 'Service' || has(self.port)": (
        lambda new, old: new.get("kind") != "Service" or "port" in new
    ),
}


def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in CRD_DIR.glob("*.yaml"):
        crd = YAML(typ="safe").load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


SCHEMAS = _schemas()


def _cel(schema: dict[str, Any], new: Any, old: Any, path: str, errors: list[str]) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        check = KNOWN_RULES.get(rule["rule"]) or cel_gateway.RULES.get(rule.get("message", ""))
        if check is None:
            raise AssertionError(
                f"CEL rule not implemented in tests/servers/crd.py: {rule['rule']}"
            )
        if not check(new, old):
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(new, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in new:
                old_sub = old.get(key) if isinstance(old, dict) else None
                _cel(sub, new[key], old_sub, f"{path}.{key}", errors)
    if isinstance(new, list) and "items" in schema:
        for i, item in enumerate(new):
            _cel(schema["items"], item, None, f"{path}[{i}]", errors)


def _fill(schema: dict[str, Any], obj: Any) -> None:
    if isinstance(obj, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                _fill(sub, obj[key])
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            _fill(schema["items"], item)


def default(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its CRD's defaults filled in where absent (in place; also returned)."""
    schema = SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is not None:
        _fill(schema, obj)
    return obj


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Errors a real API server would answer with (empty when the object is accepted)."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = SCHEMAS.get(key)
    if schema is None:
        return [f"no CRD serves {key[1]} {key[0]}"]
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]
    _cel(schema, obj, old, "", errors)
    return errors
