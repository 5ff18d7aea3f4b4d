"""``status`` and ``override``: read the rollouts recorded on their objects, command one.

Must not: judge, or write anything but the command annotation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from analyzer.commands.report import check_brief, clock, print_table, weights
from analyzer.config import LoadedRule
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.base import ConflictError, RoutedObject, RouterError, command_key
from analyzer.routers.factory import make_router
from analyzer.routers.kubeconfig import api_client
from analyzer.runtime.wiring import load_rule_files


def cmd_status(args: argparse.Namespace) -> int:
    """The rollouts as recorded on their objects: one table row each, then its last checks."""
    rules = load_rule_files(args.rules)

    async def gather() -> list[tuple[LoadedRule, RoutedObject | str]]:
        api = None
        if any(r.manifest_path is None for r in rules):
            try:
                api = await api_client(args.kubeconfig)
            except RouterError as exc:
                return [(r, f"error: {exc}") for r in rules]
        rows: list[tuple[LoadedRule, RoutedObject | str]] = []
        try:
            for loaded in rules:
                try:
                    rows.append((loaded, await make_router(loaded, api=api).read()))
                except RouterError as exc:
                    rows.append((loaded, f"error: {exc}"))
        finally:
            if api is not None:
                await api.close()
        return rows

    header = ("RULE", "PHASE", "STEP", "CANARY", "WEIGHTS")
    table: list[tuple[str, ...]] = []
    details: dict[str, list[str]] = {}
    for loaded, obj in asyncio.run(gather()):
        if isinstance(obj, str):
            table.append((loaded.name, "Error", "-", "-", obj))
            continue
        raw = obj.annotations.get(annotation_key(loaded.name))
        if raw is None:
            table.append((loaded.name, "NotStarted", "-", "-", weights(obj.targets)))
            continue
        state = RolloutState.loads(raw)
        table.append(
            (
                loaded.name,
                state.phase,
                f"{state.step + 1}/{len(state.steps)}",
                f"{state.canary_percent}%",
                weights(obj.targets),
            )
        )
        last = state.history[-1] if state.history else None
        if last is not None:
            lines = [f"last: {last.action} at {clock(last.at)}: {last.reason}"]
            lines += [f"  {check_brief(c)}" for c in last.checks]
            details[loaded.name] = lines
    print_table(header, table, sys.stdout)
    for name, lines in details.items():
        print(f"\n{name}")
        for line in lines:
            print(f"  {line}")
    return 0


def cmd_override(args: argparse.Namespace) -> int:
    """Set the command annotation on the routed object; the daemon acts at its next judgment."""
    rules = [r for r in load_rule_files(args.rules) if r.name == args.rule]
    if not rules:
        print(f"no rule named {args.rule}", file=sys.stderr)
        return 2
    loaded = rules[0]

    async def go() -> None:
        api = await api_client(args.kubeconfig) if loaded.manifest_path is None else None
        try:
            router = make_router(loaded, api=api)
            value = args.action + (f": {args.reason}" if args.reason else "")
            for _ in range(3):
                obj = await router.read()
                try:
                    await router.write(
                        version=obj.version,
                        targets=None,
                        annotations={command_key(loaded.name): value},
                    )
                    return
                except ConflictError:
                    continue
            raise RouterError("the object kept changing; try again")
        finally:
            if api is not None:
                await api.close()

    try:
        asyncio.run(go())
    except RouterError as exc:
        print(f"override: {exc}", file=sys.stderr)
        return 1
    print(f"{args.action} requested for {loaded.name}; the daemon applies it at its next judgment")
    return 0
