"""Rule files into rules, every problem with its file, line, column and field path.

Loading never raises on bad input: each problem comes back as a ``RuleError`` and the
caller decides what to keep running. Unknown keys are errors.

Must not: start rollouts, touch routed objects, or read events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from analyzer.config.base import API_VERSION
from analyzer.config.rule import CanaryRule


@dataclass(frozen=True)
class RuleError:
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        # A problem with the file itself (missing, unreadable) has no line to point at.
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class LoadedRule:
    rule: CanaryRule
    source: Path
    line: int

    @property
    def name(self) -> str:
        return self.rule.metadata.name

    @property
    def manifest_path(self) -> Path | None:
        file = self.rule.spec.target.file
        if file is None:
            return None
        path = Path(file)
        return path if path.is_absolute() else (self.source.parent / path)


def _position(node: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """Line/column (1-based) of the deepest node on ``loc`` that exists in the YAML tree."""
    line, col = 0, 0
    lc = getattr(node, "lc", None)
    if lc is not None:
        line, col = lc.line, lc.col
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line, col = node.lc.item(key)
            node = node[key]
        else:
            break
    return line + 1, col + 1


_UNION_TAGS = frozenset({"slack", "webhook", "accesslog", "prometheus"})


def _drop_union_tags(node: Any, loc: Sequence[int | str]) -> list[int | str]:
    """Pydantic puts a tagged union's tag in the error path; the YAML has no such key."""
    out: list[int | str] = []
    for key in loc:
        if isinstance(node, dict) and key not in node and key in _UNION_TAGS:
            continue
        out.append(key)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            node = None
    return out


def _field_name(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


API_GROUP = API_VERSION.split("/")[0]


def _foreign(doc: CommentedMap) -> str | None:
    """What a document is when it is plainly not a rule (another API's object: a manifest kept
    beside the rules), else None. A document that might be a mistyped rule is not foreign."""
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if not (isinstance(api, str) and isinstance(kind, str)):
        return None
    if api.split("/")[0] == API_GROUP or kind == "CanaryRule":
        return None
    return f"{kind} ({api})"


def parse_rule_text(
    text: str, source: str, skipped: list[RuleError] | None = None
) -> tuple[list[CanaryRule], list[RuleError], list[int]]:
    """Parse every document of one rule file. Returns rules, errors and each rule's line;
    documents of other APIs are left out, each noted in ``skipped`` when given."""
    yaml = YAML(typ="rt")
    rules: list[CanaryRule] = []
    lines: list[int] = []
    errors: list[RuleError] = []
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        errors.append(RuleError(source, line, col, "", f"YAML: {exc.problem or exc}"))
        return rules, errors, lines
    if not docs:
        errors.append(RuleError(source, 1, 1, "", "the file holds no rule"))
    for doc in docs:
        if not isinstance(doc, CommentedMap):
            line, col = _position(doc, [])
            errors.append(RuleError(source, line, col, "", "a rule must be a YAML mapping"))
            continue
        foreign = _foreign(doc)
        if foreign is not None:
            if skipped is not None:
                line = doc.lc.line + 1
                skipped.append(RuleError(source, line, 1, "", f"skipped: {foreign}, not a rule"))
            continue
        try:
            rule = CanaryRule.model_validate(_plain(doc))
        except ValidationError as exc:
            for err in exc.errors():
                loc = _drop_union_tags(
                    doc, [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
                )
                line, col = _position(doc, loc)
                msg = err["msg"].removeprefix("Value error, ")
                errors.append(RuleError(source, line, col, _field_name(loc), msg))
            continue
        rules.append(rule)
        lines.append(doc.lc.line + 1)
    return rules, errors, lines


def rule_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.iterdir())
                if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
            )
        else:
            out.append(path)
    return out


def target_key(rule: CanaryRule) -> tuple[str, str, str, str, str]:
    """What two rules must not share: the routed object and the virtual model."""
    t = rule.spec.target
    group = t.api_version.split("/")[0]
    return (t.kind, group, t.namespace, t.name, rule.spec.model)


def load_rules(
    paths: Iterable[Path], skipped: list[RuleError] | None = None
) -> tuple[list[LoadedRule], list[RuleError]]:
    """Load every rule under ``paths``; refuse duplicates by name and by object + model.
    Documents of other APIs (a manifest beside the rules) are skipped, noted in ``skipped``."""
    loaded: list[LoadedRule] = []
    errors: list[RuleError] = []
    for path in rule_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            errors.append(RuleError(str(path), 0, 0, "", "no such file or directory"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(RuleError(str(path), 0, 0, "", f"cannot read: {exc}"))
            continue
        rules, errs, lines = parse_rule_text(text, str(path), skipped)
        errors.extend(errs)
        loaded.extend(LoadedRule(r, path, ln) for r, ln in zip(rules, lines, strict=True))
    by_name: dict[str, LoadedRule] = {}
    by_target: dict[tuple[str, ...], LoadedRule] = {}
    kept: list[LoadedRule] = []
    for item in loaded:
        first = by_name.get(item.name)
        if first is not None:
            errors.append(
                RuleError(
                    str(item.source),
                    item.line,
                    1,
                    "metadata.name",
                    f"rule name {item.name!r} is already used at {first.source}:{first.line}",
                )
            )
            continue
        key = target_key(item.rule)
        other = by_target.get(key)
        if other is not None:
            errors.append(
                RuleError(
                    str(item.source),
                    item.line,
                    1,
                    "spec.target",
                    f"{key[0]} {key[2]}/{key[3]} model {key[4]!r} is already driven by rule "
                    f"{other.name!r} ({other.source}:{other.line}); one rule per object and model",
                )
            )
            continue
        by_name[item.name] = item
        by_target[key] = item
        kept.append(item)
    return kept, sorted(errors, key=lambda e: (e.file, e.line, e.column))


def json_schema() -> dict[str, Any]:
    schema = CanaryRule.model_json_schema(by_alias=True)
    # A field may be given as a bare dotted path: say so, as the validator accepts it.
    fields = schema["$defs"]["EventsSpec"]["properties"]["fields"]
    fields["additionalProperties"] = {
        "anyOf": [{"type": "string", "minLength": 1}, fields["additionalProperties"]]
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "canary-analyzer CanaryRule"
    return schema
