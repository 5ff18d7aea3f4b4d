"""Where an HTTPRoute keeps the weights of a pool-level canary: backendRefs to InferencePools.

A whole-pool canary (a new base model, new hardware, a new vLLM) splits a route's traffic
across two InferencePools by backendRef weight (``gateway.networking.k8s.io/v1``). The groups
of the rule are pool names. The rules re-weighted are the one named by ``target.ruleName``, or
else every rule of the route whose backendRefs name an InferencePool of the groups (a route
often sends several paths to the same pools: all of them move together, or the canary's share
would depend on the path). Those rules must route the same backends with the same weights;
rules that name none of the pools are left untouched.

A pool is a backendRef of kind InferencePool in ``inference.networking.k8s.io`` (GIE >= 1.0)
or ``inference.networking.x-k8s.io`` (the alpha pools before it). Gateway API semantics kept:
a backendRef without ``weight`` weighs 1 (the CRD default), 0 is a valid weight (no traffic),
at most 16 backendRefs per rule. A backendRef that is not an
InferencePool (a Service, say) in a re-weighted rule is reported as a target in neither group,
named ``Kind/name``, so the rollout refuses to start instead of leaving it an unknown share.
Entries keep every field they had (port, filters, namespace); a canary pool not yet routed is
added as a copy of the first pool entry, renamed.

Must not: do I/O.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping, Sequence
from typing import Any

from analyzer.rollout.weights import Target
from analyzer.routers.base import RouterError

POOL_GROUP = "inference.networking.k8s.io"
POOL_GROUPS = (POOL_GROUP, "inference.networking.x-k8s.io")
"""InferencePool's group since GIE v1.0, and the alpha one before it."""
POOL_KIND = "InferencePool"


def _is_pool(ref: Any) -> bool:
    return (
        isinstance(ref, dict) and ref.get("group") in POOL_GROUPS and ref.get("kind") == POOL_KIND
    )


def _label(ref: Any) -> str:
    """A backendRef's target name: the pool's name, or Kind/name for anything else."""
    if _is_pool(ref):
        return str(ref.get("name"))
    return f"{ref.get('kind', 'Service')}/{ref.get('name')}" if isinstance(ref, dict) else "?"


def _weight(ref: dict[str, Any], describe: str) -> int:
    weight = ref.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool):
        raise RouterError(f"{describe}: weight of backendRef {_label(ref)} is not an integer")
    return weight


def route_rules(
    doc: MutableMapping[str, Any],
    pools: Sequence[str],
    rule_name: str | None,
    describe: str,
) -> list[dict[str, Any]]:
    """The route rules whose backendRefs are re-weighted (at least one, or RouterError)."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise RouterError(f"{describe} has no spec")
    rules = [r for r in spec.get("rules") or [] if isinstance(r, dict)]
    if rule_name is not None:
        named = [r for r in rules if r.get("name") == rule_name]
        if not named:
            have = [str(r["name"]) for r in rules if "name" in r]
            raise RouterError(
                f"{describe} has no rule named {rule_name!r}"
                + (f"; its rules are named: {', '.join(have)}" if have else "; no rule has a name")
            )
        return named
    wanted = set(pools)
    chosen = [
        r
        for r in rules
        if any(_is_pool(ref) and ref.get("name") in wanted for ref in r.get("backendRefs") or [])
    ]
    if not chosen:
        raise RouterError(
            f"{describe} has no rule with a backendRef to an InferencePool named "
            f"{', '.join(pools)} (group {POOL_GROUP}, kind {POOL_KIND})"
        )
    return chosen


def _targets_of(rule: dict[str, Any], describe: str) -> tuple[Target, ...]:
    refs = rule.get("backendRefs")
    if not isinstance(refs, list):
        raise RouterError(f"{describe}: a selected rule has no backendRefs")
    return tuple((_label(ref), _weight(ref, describe)) for ref in refs)


def read_backends(
    doc: MutableMapping[str, Any],
    pools: Sequence[str],
    rule_name: str | None,
    describe: str,
) -> tuple[Target, ...]:
    """The backends and weights of the first selected rule (``disagreement`` says whether the
    others route the same)."""
    return _targets_of(route_rules(doc, pools, rule_name, describe)[0], describe)


def disagreement(
    doc: MutableMapping[str, Any],
    pools: Sequence[str],
    rule_name: str | None,
    describe: str,
) -> str | None:
    """Why the selected rules do not route the same backends with the same weights, or None.
    Not an error of the read: mid-rollout it is a human edit (the rollout pauses and says
    this), at the start a refusal."""
    rules = route_rules(doc, pools, rule_name, describe)
    first = _targets_of(rules[0], describe)
    for rule in rules[1:]:
        other = _targets_of(rule, describe)
        if sorted(other) != sorted(first):
            show = ", ".join(f"{n}={w}" for n, w in other)
            return (
                f"{describe}: the rules that route to {', '.join(pools)} disagree (rule "
                f"{rule.get('name', '?')!r}: {show}); make them equal, or set "
                "target.ruleName to drive one rule"
            )
    return None


def write_backends(
    doc: MutableMapping[str, Any],
    pools: Sequence[str],
    rule_name: str | None,
    describe: str,
    targets: Sequence[Target],
) -> None:
    """Set the selected rules' backendRefs to ``targets`` in place, keeping each entry's
    other fields; weights None are written as 1 (the Gateway API default)."""
    for rule in route_rules(doc, pools, rule_name, describe):
        listed = rule.get("backendRefs")
        if not isinstance(listed, list):
            listed = []
            rule["backendRefs"] = listed
        refs = [r for r in listed if isinstance(r, dict)]
        by_label = {_label(r): r for r in refs}
        template = next((r for r in refs if _is_pool(r)), None)
        new: list[dict[str, Any]] = []
        for name, weight in targets:
            entry = by_label.get(name)
            if entry is None:
                entry = (
                    {k: copy.deepcopy(v) for k, v in template.items() if k != "filters"}
                    if template is not None
                    else {"group": POOL_GROUP, "kind": POOL_KIND}
                )
                entry["name"] = name
            entry["weight"] = 1 if weight is None else weight
            new.append(entry)
        listed[:] = new  # in place: a manifest file keeps its comments and layout
