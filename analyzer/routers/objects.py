"""Where a routed object keeps the targets of one virtual model, read and written in place.

InferenceModel: ``spec.targetModels[] {name, weight}`` (``spec.modelName`` must be the model).
InferenceModelRewrite: the one rule in ``spec.rules[]`` whose ``matches`` select the model; its
``targets[] {modelRewrite, weight}`` (spelled ``split`` in older releases, kept as found).
Works on plain dicts (the API server's JSON) and on ruamel's round-trip maps (manifest files).

Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from analyzer.rollout.weights import Target
from analyzer.routers.base import RouterError


def target_list(
    doc: MutableMapping[str, Any], kind: str, model: str, describe: str
) -> tuple[list[Any], str]:
    """The object's list of targets for ``model`` (created if absent) and its name key."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise RouterError(f"{describe} has no spec")
    if kind == "InferenceModel":
        if spec.get("modelName") != model:
            raise RouterError(f"{describe} routes model {spec.get('modelName')!r}, not {model!r}")
        items = spec.get("targetModels")
        if not isinstance(items, list):
            items = []
            spec["targetModels"] = items
        return items, "name"
    rules = spec.get("rules")
    matching = [
        r
        for r in (rules if isinstance(rules, list) else [])
        if isinstance(r, dict)
        and any(
            isinstance(m, dict)
            and isinstance(m.get("model"), dict)
            and m["model"].get("value") == model
            for m in r.get("matches", []) or []
        )
    ]
    if len(matching) != 1:
        raise RouterError(
            f"{describe} has {len(matching)} rules matching model {model!r}; expected exactly one"
        )
    rule = matching[0]
    key = "split" if "split" in rule and "targets" not in rule else "targets"
    items = rule.get(key)
    if not isinstance(items, list):
        raise RouterError(f"{describe}: the rule for {model!r} has no {key}")
    return items, "modelRewrite"


def read_targets(
    doc: MutableMapping[str, Any], kind: str, model: str, describe: str
) -> tuple[Target, ...]:
    items, name_key = target_list(doc, kind, model, describe)
    out: list[Target] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(name_key), str):
            raise RouterError(f"{describe}: a target has no {name_key}")
        weight = item.get("weight")
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)):
            raise RouterError(f"{describe}: weight of {item[name_key]} is not an integer")
        out.append((str(item[name_key]), weight))
    return tuple(out)


def write_targets(
    doc: MutableMapping[str, Any],
    kind: str,
    model: str,
    describe: str,
    targets: Sequence[Target],
) -> None:
    """Replace the model's targets in place (weights None are written without a weight)."""
    items, name_key = target_list(doc, kind, model, describe)
    new: list[dict[str, Any]] = []
    for name, weight in targets:
        entry: dict[str, Any] = {name_key: name}
        if weight is not None:
            entry["weight"] = weight
        new.append(entry)
    items[:] = new


def read_annotations(doc: Mapping[str, Any]) -> dict[str, str]:
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    return {str(k): str(v) for k, v in ann.items()}
