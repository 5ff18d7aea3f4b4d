"""Where a routed object keeps the targets of one virtual model, read and written in place.

InferenceModel: ``spec.targetModels[] {name, weight}`` (``spec.modelName`` must be the model).
InferenceModelRewrite: the one rule in ``spec.rules[]`` whose ``matches`` select the model; its
``targets[] {modelRewrite, weight}`` (spelled ``split`` in older releases, kept as found).
HTTPRoute: the backendRefs of its rules that route to the rule's pools (httproute.py).
Works on plain dicts (the API server's JSON) and on ruamel's round-trip maps (manifest files).

Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer.rollout.weights import Target
from analyzer.routers.base import RoutedObject, RouterError
from analyzer.routers.httproute import disagreement, read_backends, write_backends


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
    doc: MutableMapping[str, Any],
    kind: str,
    model: str,
    describe: str,
    *,
    pools: Sequence[str] = (),
    rule_name: str | None = None,
) -> tuple[Target, ...]:
    """The targets for ``model``; for an HTTPRoute, the backends of the rules that route to
    ``pools`` (or of the rule named ``rule_name``)."""
    if kind == "HTTPRoute":
        return read_backends(doc, pools, rule_name, describe)
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


def inconsistency(
    doc: MutableMapping[str, Any],
    kind: str,
    describe: str,
    *,
    pools: Sequence[str] = (),
    rule_name: str | None = None,
) -> str | None:
    """Why the object routes the model two ways at once (an HTTPRoute's rules that disagree),
    or None; the other kinds keep one target list per model."""
    return disagreement(doc, pools, rule_name, describe) if kind == "HTTPRoute" else None


CONDITIONS = {
    "InferenceModel": ("Ready", "Accepted"),
    "InferenceModelRewrite": ("Accepted", "Ready"),
    "HTTPRoute": ("Accepted", "ResolvedRefs"),
}
"""The status conditions through which the controller that reads an object says it takes it."""


def refusal(doc: Mapping[str, Any], kind: str, describe: str) -> str | None:
    """Why the controller that reads the object says it does not take it: one of its
    conditions False for the object's current generation (an HTTPRoute's per parent gateway).
    None when none is, or none says yet (a condition of an older generation is not an answer
    about the weights written since)."""
    status = doc.get("status")
    if not isinstance(status, dict):
        return None
    generation = (doc.get("metadata") or {}).get("generation")
    sources: list[tuple[str, Any]] = [("", status.get("conditions"))]
    if kind == "HTTPRoute":
        sources = [
            (f"{p.get('controllerName', 'a gateway')}: ", p.get("conditions"))
            for p in status.get("parents") or []
            if isinstance(p, dict)
        ]
    for who, conditions in sources:
        for c in conditions if isinstance(conditions, list) else []:
            if not isinstance(c, dict) or c.get("type") not in CONDITIONS.get(kind, ()):
                continue
            seen = c.get("observedGeneration")
            current = seen is None or generation is None or seen == generation
            if c.get("status") == "False" and current:
                return (
                    f"{describe}: {who}{c['type']}=False ({c.get('reason', 'no reason')}): "
                    f"{c.get('message', '')}".rstrip(": ")
                )
    return None


def write_targets(
    doc: MutableMapping[str, Any],
    kind: str,
    model: str,
    describe: str,
    targets: Sequence[Target],
    *,
    pools: Sequence[str] = (),
    rule_name: str | None = None,
) -> None:
    """Replace the model's targets in place (weights None are written without a weight)."""
    if kind == "HTTPRoute":
        write_backends(doc, pools, rule_name, describe, targets)
        return
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


@dataclass(frozen=True)
class Routing:
    """Where one rule's targets sit in its object, for the routers: the kind, the virtual
    model and, for an HTTPRoute, the pools of the rule's groups and the route rule named."""

    kind: str
    model: str
    describe: str
    pools: tuple[str, ...] = ()
    rule_name: str | None = None

    def read(self, doc: MutableMapping[str, Any]) -> tuple[Target, ...]:
        return read_targets(
            doc, self.kind, self.model, self.describe, pools=self.pools, rule_name=self.rule_name
        )

    def write(self, doc: MutableMapping[str, Any], targets: Sequence[Target]) -> None:
        write_targets(
            doc,
            self.kind,
            self.model,
            self.describe,
            targets,
            pools=self.pools,
            rule_name=self.rule_name,
        )

    def routed(self, version: str, doc: MutableMapping[str, Any]) -> RoutedObject:
        """The object as the controller sees it: targets, annotations, and what is wrong."""
        return RoutedObject(
            version=version,
            targets=self.read(doc),
            annotations=read_annotations(doc),
            inconsistency=self.inconsistency(doc),
            refusal=self.refusal(doc),
        )

    def refusal(self, doc: MutableMapping[str, Any]) -> str | None:
        return refusal(doc, self.kind, self.describe)

    def inconsistency(self, doc: MutableMapping[str, Any]) -> str | None:
        return inconsistency(
            doc, self.kind, self.describe, pools=self.pools, rule_name=self.rule_name
        )
