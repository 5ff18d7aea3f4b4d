"""``status`` and ``override``: read the rollouts recorded on their objects, command one.

Must not: judge, or write anything but the command annotation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from ruamel.yaml import YAML

from analyzer.commands.report import check_brief, clock, print_table, weights
from analyzer.config import LoadedRule
from analyzer.rollout.state import ANNOTATION_PREFIX, RolloutState, annotation_key
from analyzer.routers.base import ConflictError, RoutedObject, RouterError, command_key
from analyzer.routers.factory import make_router
from analyzer.routers.kubeconfig import api_client
from analyzer.runtime.wiring import load_rule_files

GIE = "inference.networking.x-k8s.io"
ROUTED_KINDS = (
    (GIE, "v1alpha1", "inferencemodels", "InferenceModel"),
    (GIE, "v1alpha2", "inferencemodels", "InferenceModel"),
    (GIE, "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite"),
    ("llm-d.ai", "v1alpha2", "inferencemodelrewrites", "InferenceModelRewrite"),
    ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
)


async def _cluster_rollouts(kubeconfig: str | None, namespace: str) -> list[dict[str, Any]]:
    """Every rollout recorded on the routable objects of ``namespace`` (their state
    annotations), without the rule files: what `kubectl argo rollouts get` shows."""
    api = await api_client(kubeconfig)
    now, records = time.time(), []
    try:
        custom = client.CustomObjectsApi(api)
        for group, version, plural, kind in ROUTED_KINDS:
            try:
                listed = await custom.list_namespaced_custom_object(
                    group, version, namespace, plural, _request_timeout=10
                )
            except ApiException as exc:
                if exc.status == 404:  # not served in this cluster
                    continue
                raise RouterError(f"listing {plural}.{group}: API error {exc.status}") from None
            for item in listed.get("items", []):
                meta = item["metadata"]
                annotations = meta.get("annotations") or {}
                for key, raw in sorted(annotations.items()):
                    if not key.startswith(ANNOTATION_PREFIX):
                        continue
                    rule = key.removeprefix(ANNOTATION_PREFIX)
                    state = RolloutState.loads(raw)
                    obj = RoutedObject(meta["resourceVersion"], state.applied, annotations)
                    record = _record(rule, obj, now)
                    record["object"] = f"{kind} {namespace}/{meta['name']} ({group}/{version})"
                    records.append(record)
    finally:
        await api.close()
    return records


def cmd_status(args: argparse.Namespace) -> int:
    """The rollouts as recorded on their objects: one table row each, then its last checks.
    Without ``--rules``, those recorded on every routable object of ``--namespace``."""
    if not args.rules:
        try:
            found = asyncio.run(_cluster_rollouts(args.kubeconfig, args.namespace))
        except (RouterError, OSError) as exc:  # no kubeconfig, or the API unreachable
            print(f"status: {exc}", file=sys.stderr)
            return 1
        return _show(found, args.output)
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

    now = time.time()
    return _show([_record(r.name, obj, now) for r, obj in asyncio.run(gather())], args.output)


def _show(records: list[dict[str, Any]], output: str) -> int:
    # Through JSON once: numbers from the state (numpy scalars among them) become plain ones.
    plain = orjson.dumps(records, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if output == "json":
        sys.stdout.buffer.write(plain + b"\n")
    elif output == "yaml":
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        yaml.dump(orjson.loads(plain), sys.stdout)
    else:
        _print_status(records, wide=output == "wide")
    return 1 if any(r["phase"] == "Error" for r in records) else 0


def _record(rule: str, obj: RoutedObject | str, now: float) -> dict[str, Any]:
    """One rollout as recorded on its object (kubectl-style status, as data)."""
    record: dict[str, Any] = {"rule": rule, "phase": "Error", "error": None}
    if isinstance(obj, str):
        record["error"] = obj
        return record
    record["weights"] = dict(obj.targets)
    record["pending_command"] = obj.annotations.get(command_key(rule))
    raw = obj.annotations.get(annotation_key(rule))
    if raw is None:
        record["phase"] = "NotStarted"
        return record
    state = RolloutState.loads(raw)
    last = state.history[-1] if state.history else None
    record.update(
        phase=state.phase,
        step=state.step + 1,
        steps=len(state.steps),
        canary_percent=state.canary_percent,
        step_started_at=state.step_started_at,
        step_age_seconds=None if state.finished else round(now - state.step_started_at),
        last_decision=None if last is None else last.to_json(),
    )
    return record


def _print_status(records: list[dict[str, Any]], wide: bool) -> None:
    header = ("RULE", "PHASE", "STEP", "CANARY", *(("AGE", "COMMAND") if wide else ()), "WEIGHTS")
    table: list[tuple[str, ...]] = []
    for r in records:
        step = f"{r['step']}/{r['steps']}" if "step" in r else "-"
        canary = f"{r['canary_percent']}%" if "canary_percent" in r else "-"
        shown = r["error"] or weights(list(r.get("weights", {}).items()))
        extra: tuple[str, ...] = ()
        if wide:
            age = r.get("step_age_seconds")
            extra = ("-" if age is None else f"{age}s", r.get("pending_command") or "-")
        table.append((r["rule"], r["phase"], step, canary, *extra, shown))
    print_table(header, table, sys.stdout)
    for r in records:
        last = r.get("last_decision")
        if last is None:
            continue
        print(f"\n{r['rule']}")
        print(f"  last: {last['action']} at {clock(last['at'])}: {last['reason']}")
        for c in last.get("checks", []):
            print(f"    {check_brief(c)}")


class NotRunning(RouterError):
    """The rollout the override names is not running: there is nothing to command."""


def _refuse_unless_running(obj: RoutedObject, rule: str) -> None:
    raw = obj.annotations.get(annotation_key(rule))
    if raw is None:
        raise NotRunning(f"rule {rule} has no rollout on its object yet; nothing to override")
    state = RolloutState.loads(raw)
    if state.finished:
        raise NotRunning(
            f"the rollout of rule {rule} is {state.phase}; a command left now would act on the "
            "next rollout, so none is set"
        )


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
                _refuse_unless_running(obj, loaded.name)
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
