"""Wiring: rule files into controllers, each with its router, notifier, gates and metrics source.

Everything that can be wrong with a rule before it runs (a file that does not parse, a secret
that is not set, a router that cannot reach its object) is raised as ``SetupError`` naming the
rule and the fix; the caller decides whether that ends the process (start-up) or only drops
that rule (a reload, where the others keep running).

Must not: print, exit, or start any loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from analyzer.analysis.steps import RolloutWindows
from analyzer.config import LoadedRule, load_rules
from analyzer.errors import SetupError
from analyzer.gates.factory import make_gates
from analyzer.notify.delivery import DeliveryQueue
from analyzer.notify.factory import make_notifier
from analyzer.routers.base import RouterError
from analyzer.routers.factory import make_router
from analyzer.routers.leading import LeaderOnlyRouter
from analyzer.runtime.controller import JudgmentListener, RolloutController
from analyzer.secrets import SecretError
from analyzer.sources.metrics import make_metrics_source

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

IN_POD = "KUBERNETES_SERVICE_HOST"
"""Set in every pod's environment."""
log = structlog.get_logger("analyzer.reload")


def load_rule_files(paths: Sequence[str | Path]) -> list[LoadedRule]:
    """Every rule of ``paths``; any problem in any file refuses them all, each named."""
    rules, errors = load_rules([Path(p) for p in paths])
    if errors:
        raise SetupError([str(err) for err in errors])
    if not rules:
        raise SetupError(["no rules found in " + ", ".join(map(str, paths))])
    return rules


def build_controllers(
    rules: Sequence[LoadedRule],
    dry_run: bool,
    listener: JudgmentListener | None,
    api: ApiClient | None = None,
    queues: list[DeliveryQueue] | None = None,
    is_leader: Callable[[], bool] = lambda: True,
    live: bool = False,
) -> list[RolloutController]:
    """``is_leader`` is asked before every write (routers/leading.py); ``live``: the cluster
    daemon, where the gateway reads the objects written, so the traffic must follow them
    (and, in a pod, a rule's ``target.file`` is refused: no manifest is there to route)."""
    out = []
    for loaded in rules:
        if live and loaded.manifest_path is not None and IN_POD in os.environ:
            raise SetupError(
                [
                    f"{loaded.source}:{loaded.line}: rule {loaded.name}: target.file is for "
                    "embedded mode (run --events, replay); in the cluster the daemon routes "
                    f"{loaded.rule.spec.target.kind} {loaded.rule.spec.target.namespace}/"
                    f"{loaded.rule.spec.target.name} itself: remove file: from the rule"
                ]
            )
        try:
            router = LeaderOnlyRouter(make_router(loaded, dry_run, api), is_leader)
            notifier, rule_queues = make_notifier(
                loaded.rule.spec, api if loaded.manifest_path is None else None
            )
            gates = make_gates(loaded.rule.spec)
            metrics = make_metrics_source(loaded.rule.spec.prometheus)
        except (RouterError, SecretError) as exc:
            raise SetupError([f"{loaded.source}:{loaded.line}: rule {loaded.name}: {exc}"]) from exc
        if queues is not None:
            queues.extend(rule_queues)
        out.append(
            RolloutController(
                loaded,
                router,
                notifier,
                dry_run=dry_run,
                on_judgment=listener,
                gates=gates,
                prometheus=metrics,
                traffic_follows=live and loaded.manifest_path is None,
            )
        )
    return out


def _shape(w: RolloutWindows) -> tuple[object, ...]:
    """What windows must share to be carried over a reload (besides the metrics they keep)."""
    return (w.baseline, w.canary, w.raw_limit, w.warmup)


def carry_over(old: RolloutController, fresh: RolloutController) -> None:
    """``fresh`` succeeds ``old``, its rule before a reload, and ``old`` stops acting. Of the
    same rollout (revision), ``fresh`` keeps its state, judgment grid and the evidence its
    windows hold when they collect what it reads (the log is not read twice: records are
    skipped by offset, so new windows would see only what comes after the reload)."""
    old.retired = True
    if old.revision != fresh.revision:
        return
    if _shape(old.steps) == _shape(fresh.steps) and set(fresh.steps.metrics) <= set(
        old.steps.metrics
    ):
        fresh.steps = old.steps
    else:
        log.warning("reload_evidence_restarts", rule=fresh.name, reason="other metrics read")
    fresh.state, fresh.next_judgment_at = old.state, old.next_judgment_at
    fresh.last_seen_version = old.last_seen_version
    fresh.announced = list(old.announced)
    fresh.outbox = list(old.outbox)
    fresh.judgments = old.judgments


def swap_controllers(
    current: Sequence[RolloutController],
    rules: Sequence[LoadedRule],
    dry_run: bool,
    listener: JudgmentListener | None,
    api: ApiClient | None,
    queues: list[DeliveryQueue],
    is_leader: Callable[[], bool] = lambda: True,
    live: bool = False,
) -> tuple[list[RolloutController], list[str]]:
    """Keep the controllers whose rule did not change, build the others; a rule that cannot
    be built is left out (the others keep running) and its problem returned."""
    by_rule = {(c.name, c.loaded.rule.model_dump_json()): c for c in current}
    out: list[RolloutController] = []
    problems: list[str] = []
    for loaded in rules:
        kept = by_rule.get((loaded.name, loaded.rule.model_dump_json()))
        if kept is not None:
            out.append(kept)
            continue
        try:
            [fresh] = build_controllers([loaded], dry_run, listener, api, queues, is_leader, live)
        except SetupError as exc:
            problems.extend(exc.lines)
            continue
        replaced = next((c for c in current if c.name == loaded.name), None)
        if replaced is not None:
            carry_over(replaced, fresh)  # same revision: the rollout and its evidence go on
        out.append(fresh)
    return out, problems


def without_log_readers(
    rules: Sequence[LoadedRule], reads_log: bool
) -> tuple[list[LoadedRule], list[str]]:
    """The rules a daemon can judge, and why the others are refused: with no access log read
    (no Kafka), a rule with access-log checks would wait for evidence that never comes."""
    if reads_log:
        return list(rules), []
    kept, problems = [], []
    for loaded in rules:
        if loaded.rule.spec.accesslog_checks:
            problems.append(
                f"{loaded.source}:{loaded.line}: rule {loaded.name} has access-log checks, and "
                "this daemon reads no access log (started without --kafka): restart it with "
                "--kafka, or give the rule Prometheus checks only"
            )
        else:
            kept.append(loaded)
    return kept, problems
