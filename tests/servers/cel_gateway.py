"""The CEL validation rules of Gateway API's HTTPRoute CRD, in Python, for the API emulator.

Keyed by each rule's ``message``: in that CRD (tests/crds, v1.6.1, pinned) every message names
exactly one rule, and the rule texts are long. A message not implemented here still fails
loudly in crd.py instead of passing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Rule = Callable[[Any, Any], bool]
EXACT_OR_PREFIX = ("Exact", "PathPrefix")
PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
FILTER_FIELDS = {
    "CORS": "cors",
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
}
DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|s|m)")
DURATION_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _blank(obj: dict[str, Any], key: str) -> bool:
    return not obj.get(key)


def _same_optional(p1: dict[str, Any], p2: dict[str, Any], key: str) -> bool:
    both_blank = _blank(p1, key) and _blank(p2, key)
    return both_blank or (key in p1 and key in p2 and p1[key] == p2[key])


def _same_parent(p1: dict[str, Any], p2: dict[str, Any]) -> bool:
    return all(p1.get(k) == p2.get(k) for k in ("group", "kind", "name")) and _same_optional(
        p1, p2, "namespace"
    )


def _prefix_rewrite(filters: Any, field: str) -> bool:
    """exists_one(f, f.<field>.path.type == ReplacePrefixMatch, with replacePrefixMatch)"""
    hits = 0
    for f in filters or []:
        path = (f.get(field) or {}).get("path") or {}
        hits += path.get("type") == "ReplacePrefixMatch" and "replacePrefixMatch" in path
    return hits == 1


def _one_prefix_match(rule: dict[str, Any]) -> bool:
    matches = rule.get("matches") or []
    return len(matches) == 1 and (matches[0].get("path") or {}).get("type") == "PathPrefix"


def _seconds(duration: str) -> float:
    return sum(float(n) * DURATION_SECONDS[u] for n, u in DURATION.findall(duration))


def _path_rule(test: Callable[[str], bool]) -> Rule:
    return lambda new, old: new.get("type") not in EXACT_OR_PREFIX or test(new.get("value", ""))


RULES: dict[str, Rule] = {
    "sectionName must be specified when parentRefs includes 2 or more references to the same "
    "parent": lambda new, old: all(
        _blank(p1, "sectionName") == _blank(p2, "sectionName")
        for p1 in new
        for p2 in new
        if _same_parent(p1, p2)
    ),
    "sectionName must be unique when parentRefs includes 2 or more references to the same "
    "parent": lambda new, old: all(
        sum(_same_parent(p1, p2) and _same_optional(p1, p2, "sectionName") for p2 in new) == 1
        for p1 in new
    ),
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across "
    "all rules in a route must be less than 128": lambda new, old: (
        sum(len(r.get("matches") or []) for r in new[:16]) <= 128
    ),
    "RequestRedirect filter must not be used together with backendRefs": lambda new, old: (
        not new.get("backendRefs")
        or all("requestRedirect" not in f for f in new.get("filters") or [])
    ),
    "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix "
    "match must be specified": lambda new, old: (
        not _prefix_rewrite(new.get("filters"), "requestRedirect") or _one_prefix_match(new)
    ),
    "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match "
    "must be specified": lambda new, old: (
        not _prefix_rewrite(new.get("filters"), "urlRewrite") or _one_prefix_match(new)
    ),
    "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, "
    "exactly one PathPrefix match must be specified": lambda new, old: (
        sum(
            _prefix_rewrite(b.get("filters"), "requestRedirect")
            for b in new.get("backendRefs") or []
        )
        != 1
        or _one_prefix_match(new)
    ),
    "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly "
    "one PathPrefix match must be specified": lambda new, old: (
        sum(_prefix_rewrite(b.get("filters"), "urlRewrite") for b in new.get("backendRefs") or [])
        != 1
        or _one_prefix_match(new)
    ),
    "Must have port for Service reference": lambda new, old: (
        not (new.get("group", "") == "" and new.get("kind") == "Service") or "port" in new
    ),
    "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but "
    "not both": lambda new, old: (
        not (
            any(f.get("type") == "RequestRedirect" for f in new)
            and any(f.get("type") == "URLRewrite" for f in new)
        )
    ),
    "AllowHeaders cannot contain '*' alongside other methods": lambda new, old: (
        not ("*" in new and len(new) > 1)
    ),
    "AllowMethods cannot contain '*' alongside other methods": lambda new, old: (
        not ("*" in new and len(new) > 1)
    ),
    "AllowOrigins cannot contain '*' alongside other origins": lambda new, old: (
        not ("*" in new and len(new) > 1)
    ),
    "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter": (
        lambda new, old: not ("percent" in new and "fraction" in new)
    ),
    "numerator must be less than or equal to denominator": lambda new, old: (
        new["numerator"] <= new.get("denominator", 100)
    ),
    "backendRequest timeout cannot be longer than request timeout": lambda new, old: (
        not (
            "request" in new
            and "backendRequest" in new
            and _seconds(new["request"]) != 0
            and _seconds(new["backendRequest"]) > _seconds(new["request"])
        )
    ),
    "value must be an absolute path and start with '/' when type one of ['Exact', "
    "'PathPrefix']": _path_rule(lambda v: v.startswith("/")),
    "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']": lambda new, old: (
        new.get("type") in (*EXACT_OR_PREFIX, "RegularExpression")
    ),
    "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%]"
    "[0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']": _path_rule(
        lambda v: PATH_CHARS.match(v) is not None
    ),
}
for _type, _field in (
    ("ReplaceFullPath", "replaceFullPath"),
    ("ReplacePrefixMatch", "replacePrefixMatch"),
):
    # requestRedirect.path and urlRewrite.path: the type and its field go together
    RULES[f"{_field} must be specified when type is set to '{_type}'"] = (
        lambda new, old, t=_type, f=_field: new.get("type") != t or f in new
    )
    RULES[f"type must be '{_type}' when {_field} is set"] = lambda new, old, t=_type, f=_field: (
        f not in new or new.get("type") == t
    )
for _part in ("//", "/./", "/../", "%2f", "%2F", "#"):
    RULES[f"must not contain '{_part}' when type one of ['Exact', 'PathPrefix']"] = _path_rule(
        lambda v, p=_part: p not in v
    )
for _end in ("/..", "/."):
    RULES[f"must not end with '{_end}' when type one of ['Exact', 'PathPrefix']"] = _path_rule(
        lambda v, e=_end: not v.endswith(e)
    )
for _type, _field in FILTER_FIELDS.items():
    RULES[f"filter.{_field} must be nil if the filter.type is not {_type}"] = (
        lambda new, old, t=_type, f=_field: not (f in new and new.get("type") != t)
    )
    RULES[f"filter.{_field} must be specified for {_type} filter.type"] = (
        lambda new, old, t=_type, f=_field: not (f not in new and new.get("type") == t)
    )
for _type in (
    "CORS",
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
):
    RULES[f"{_type} filter cannot be repeated"] = lambda new, old, t=_type: (
        sum(f.get("type") == t for f in new) <= 1
    )
