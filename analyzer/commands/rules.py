"""``rules validate`` and ``rules schema``.

Must not: start a rollout or talk to a cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from analyzer.commands.strict import problems as strict_problems
from analyzer.config import RuleError, json_schema, load_rules


def cmd_rules_validate(args: argparse.Namespace) -> int:
    skipped: list[RuleError] = []
    rules, errors = load_rules([Path(p) for p in args.paths], skipped)
    for err in errors:
        print(err)
    for note in skipped:
        print(note)
    failed = bool(errors)
    for r in rules:
        if args.strict:
            found, notes = strict_problems(r)
            for line in [*found, *notes]:
                print(line)
            if found:
                failed = True
                continue
        print(f"{r.source}:{r.line}: rule {r.name} ok")
    if not rules and not errors:
        print("no rule files found")
        return 2
    return 1 if failed else 0


def cmd_rules_schema(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0
