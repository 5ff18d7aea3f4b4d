"""Command line: run | replay | simulate | rules validate | rules schema | status.

Must not: hold analysis logic; it loads rules, builds controllers and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import orjson
from kubernetes_asyncio.client import ApiClient

from analyzer import __version__, plancmd
from analyzer.analysis.checks import deciding_p
from analyzer.analysis.judge import Verdict
from analyzer.config import LoadedRule, json_schema, load_rules
from analyzer.notify.delivery import DeliveryQueue
from analyzer.notify.factory import make_gates, make_notifier
from analyzer.rollout.machine import COMMANDS
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.rollout.weights import Target
from analyzer.routers.base import (
    ConflictError,
    RoutedObject,
    RouterError,
    TrafficRouter,
    command_key,
)
from analyzer.routers.dryrun import DryRunRouter
from analyzer.routers.factory import make_router
from analyzer.routers.kube import KubeRouter
from analyzer.routers.kubeconfig import api_client
from analyzer.runtime.controller import JudgmentListener, RolloutController
from analyzer.runtime.daemon import Supervisor
from analyzer.runtime.engine import Engine
from analyzer.runtime.http import Observed, make_app
from analyzer.runtime.http import serve as serve_http
from analyzer.runtime.leader import KubeLeaseStore, LeaderElector
from analyzer.runtime.reload import RuleDirectory
from analyzer.secrets import SecretError
from analyzer.sources.kafka import KafkaSettings, KafkaSource
from analyzer.sources.prometheus import PrometheusSource
from analyzer.sources.replay import iter_batches
from analyzer.sources.simulated import GatewaySimulator, TargetsReader, TrafficProfile
from analyzer.telemetry import configure_logging

DEMO_FILES = ("rule.yaml", "inferencemodel.yaml", "access-log.jsonl.gz")


# -- output helpers --


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _weights(targets: Sequence[tuple[str, int | None]]) -> str:
    return " ".join(f"{n}={'-' if w is None else w}" for n, w in targets)


def _check_brief(c: dict[str, Any]) -> str:
    eff, ci = c.get("effect"), c.get("ci")
    if eff is None:
        shown = "n/a"
    elif c.get("effect_kind") == "ratio":
        shown = f"x{eff:.3f}" + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")
    else:
        shown = f"{eff:+.4f}" + (f" [{ci[0]:+.3f},{ci[1]:+.3f}]" if ci else "")
    p = deciding_p(c)
    ptxt = f" p={p:.2g}" if p is not None else ""
    return f"{c['name']} {shown}{ptxt} {c['status']}"


class Progress:
    """Live lines a person can follow: one per judgment, and a block per decision."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def judgment(self, c: RolloutController, now: float, verdict: Verdict) -> None:
        s = c.state
        w = c.windows
        if s is None or w is None:
            return
        elapsed = now - s.step_started_at
        checks = "  ".join(_check_brief(r.to_json()) for r in verdict.checks)
        warm, status = "", str(verdict.status)
        if now <= w.evidence_from:  # the step's first seconds: counted, not yet evidence
            warm = f"  warm-up {w.warm_baseline.requests}/{w.warm_canary.requests}"
            status = f"warming up ({w.evidence_from - now:.0f}s left)"
        print(
            f"{_clock(now)}  {c.name}  step {s.step + 1}/{len(s.steps)} {s.canary_percent:>3}%"
            f"  {elapsed:>4.0f}s  n={w.baseline.requests}/{w.canary.requests}{warm}  {checks}"
            f"  => {status}",
            file=self.out,
            flush=True,
        )

    def decisions(self, c: RolloutController, start: int) -> None:
        for n in c.announced[start:]:
            d = n.decision
            print(
                f"{_clock(d.at)}  {c.name}  {d.action.upper():<8} {d.canary_percent}% canary: "
                f"{d.reason}",
                file=self.out,
            )
            if n.weights_after != n.weights_before:
                print(f"          weights: {_weights(n.weights_after)}", file=self.out)
            self.out.flush()


class ProgressListener:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seen: dict[str, int] = {}

    def __call__(self, c: RolloutController, now: float, verdict: Verdict) -> None:
        self.progress.judgment(c, now, verdict)

    def flush(self, controllers: Sequence[RolloutController]) -> None:
        for c in controllers:
            start = self.seen.get(c.name, 0)
            self.progress.decisions(c, start)
            self.seen[c.name] = len(c.announced)


# -- building --


def _unreadable(events: str) -> str | None:
    """Why the access log cannot be read, as one line that says what to do; None if it can."""
    if events == "-":
        return None
    path = Path(events)
    if not path.exists():
        return f"error: --events {events}: no such file; give a JSONL access log (.gz ok) or -"
    if not path.is_file():
        return f"error: --events {events}: not a file; give a JSONL access log (.gz ok) or -"
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return f"error: --events {events}: {exc.strerror}; check its permissions"


def _load_or_exit(paths: Sequence[str]) -> list[LoadedRule]:
    rules, errors = load_rules([Path(p) for p in paths])
    if errors:
        for err in errors:
            print(err, file=sys.stderr)
        raise SystemExit(2)
    if not rules:
        print("no rules found in " + ", ".join(paths), file=sys.stderr)
        raise SystemExit(2)
    return rules


def _controllers(
    rules: Sequence[LoadedRule],
    dry_run: bool,
    listener: JudgmentListener | None,
    api: ApiClient | None = None,
    queues: list[DeliveryQueue] | None = None,
) -> list[RolloutController]:
    out = []
    for loaded in rules:
        try:
            router = make_router(loaded, dry_run, api)
            notifier, rule_queues = make_notifier(
                loaded.rule.spec, api if loaded.manifest_path is None else None
            )
            if queues is not None:
                queues.extend(rule_queues)
            gates = make_gates(loaded.rule.spec)
            prom = loaded.rule.spec.prometheus
            prometheus = PrometheusSource(prom) if prom is not None else None
        except (RouterError, SecretError) as exc:
            print(f"{loaded.source}:{loaded.line}: rule {loaded.name}: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
        out.append(
            RolloutController(
                loaded,
                router,
                notifier,
                dry_run=dry_run,
                on_judgment=listener,
                gates=gates,
                prometheus=prometheus,
            )
        )
    return out


def _demo_dir(workdir: str | None, names: Sequence[str] = DEMO_FILES) -> Path:
    target = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="canary-analyzer-demo-"))
    target.mkdir(parents=True, exist_ok=True)
    demo = resources.files("analyzer") / "demo"
    for name in names:
        with resources.as_file(demo / name) as src:
            shutil.copyfile(src, target / name)
    return target


async def _summary(controllers: Sequence[RolloutController]) -> list[dict[str, Any]]:
    out = []
    for c in controllers:
        try:
            obj = await c.router.read()
            weights: dict[str, int | None] = dict(obj.targets)
        except RouterError as exc:
            weights = {}
            c.error = c.error or str(exc)
        s = c.state
        out.append(
            {
                "name": c.name,
                "revision": c.revision,
                "phase": s.phase if s else "Error",
                "step": s.step if s else None,
                "canary_percent": s.canary_percent if s else None,
                "weights": weights,
                "error": c.error,
                "unattributed": dict(c.unattributed.most_common()),
                "decisions": [
                    {
                        **{k: v for k, v in n.decision.to_json().items() if k != "checks"},
                        "weights": dict(n.weights_after),
                        "checks": [
                            {
                                k: ch.get(k)
                                for k in (
                                    "name",
                                    "status",
                                    "p_value",
                                    "p_adjusted",
                                    "p_within",
                                    "effect",
                                    "ci",
                                    "bound",
                                    "n_baseline",
                                    "n_canary",
                                    "strata",
                                    "method",
                                )
                            }
                            for ch in n.decision.checks
                        ],
                    }
                    for n in c.announced
                ],
            }
        )
    return out


def _print_summary(rollouts: list[dict[str, Any]], out: TextIO) -> None:
    for r in rollouts:
        line = f"{r['name']}: {r['phase']}"
        if r["canary_percent"] is not None:
            line += f" at {r['canary_percent']}% canary"
        print(line, file=out)
        if r["error"]:
            print(f"  error: {r['error']}", file=out)
        print(f"  weights: {_weights(list(r['weights'].items()))}", file=out)
        lost = r.get("unattributed") or {}
        if lost:
            named = ", ".join(f"{a or '(no adapter)'} {n}" for a, n in lost.items())
            print(f"  unattributed: {sum(lost.values())} lines ({named})", file=out)


# -- commands --


async def _run_file(
    rules: list[LoadedRule], events: str, dry_run: bool, progress: Progress | None
) -> tuple[Engine, list[RolloutController], ProgressListener | None]:
    listener = ProgressListener(progress) if progress else None
    controllers = _controllers(rules, dry_run, listener)
    # After the rules and their secrets: what is wrong with them is the first thing to say.
    if (problem := _unreadable(events)) is not None:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    engine = Engine(controllers)
    for batch in iter_batches(events):
        await engine.feed_lines(batch)
        if listener is not None:
            listener.flush(controllers)
        if engine.finished:
            break
    await engine.finish()
    await engine.close()
    if listener is not None:
        listener.flush(controllers)
    return engine, controllers, listener


def _watcher(
    router: KubeRouter,
    controller: RolloutController,
    engine: Engine,
    is_leader: Callable[[], bool],
    stop: asyncio.Event,
) -> Callable[[], Awaitable[None]]:
    """The watch loop of one routed object; only the leader reacts (followers never write)."""

    async def changed(obj: RoutedObject) -> None:
        if is_leader():
            await controller.on_object_change(obj, engine.now or time.time())

    return lambda: router.watch(changed, stop)


def _swap_controllers(
    current: Sequence[RolloutController],
    rules: Sequence[LoadedRule],
    dry_run: bool,
    listener: JudgmentListener | None,
    api: ApiClient | None,
    queues: list[DeliveryQueue],
) -> list[RolloutController]:
    """Keep the controllers whose rule did not change; build the others."""
    by_rule = {(c.name, c.loaded.rule.model_dump_json()): c for c in current}
    out = []
    for loaded in rules:
        kept = by_rule.get((loaded.name, loaded.rule.model_dump_json()))
        if kept is not None:
            out.append(kept)
        else:
            try:
                out.extend(_controllers([loaded], dry_run, listener, api, queues))
            except SystemExit:  # a secret that is missing: keep the others running
                continue
    return out


IDLE_LOOKBACK = 300.0
"""Seconds of log a replica reads at start when no rollout is running."""


async def _run_kafka(
    rules: list[LoadedRule],
    settings: KafkaSettings,
    dry_run: bool,
    progress: Progress,
    kubeconfig: str | None = None,
    lease_name: str = "canary-analyzer",
    lease_namespace: str | None = None,
    http_port: int = 8080,
    rule_paths: list[Path] | None = None,
) -> list[dict[str, Any]]:
    """Live: consume until SIGINT/SIGTERM, judging on event time and on the wall clock."""
    listener = ProgressListener(progress)
    api = None
    if any(r.manifest_path is None for r in rules):
        try:
            api = await api_client(kubeconfig)
        except RouterError as exc:
            print(f"kubernetes: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
    queues: list[DeliveryQueue] = []
    controllers = _controllers(rules, dry_run, listener, api, queues)
    for c in controllers:
        router = c.router.inner if isinstance(c.router, DryRunRouter) else c.router
        if isinstance(router, KubeRouter):
            try:
                await router.check_served()
            except RouterError as exc:
                print(f"rule {c.name}: {exc}", file=sys.stderr)
                raise SystemExit(2) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(stop)
    is_leader: Callable[[], bool] = lambda: True  # noqa: E731 - one replica, files: always leads
    if api is not None:
        identity = f"{socket.gethostname()}-{os.getpid()}"
        namespace = lease_namespace or os.environ.get("POD_NAMESPACE", "default")
        elector = LeaderElector(
            KubeLeaseStore(api, lease_name, namespace), identity, clock=time.time
        )
        await elector.try_acquire_or_renew()
        supervisor.spawn("leader-election", lambda: elector.run(stop))
        is_leader = elector.is_leader
    engine = Engine(controllers, is_leader=is_leader)
    await engine.start(time.time())

    def running_since() -> float | None:
        starts = [c.state.evidence_since for c in controllers if c.active and c.state]
        return min(starts) if starts else None

    replica = os.environ.get("CANARY_ANALYZER_REPLICA") or socket.gethostname()
    source = KafkaSource(settings.for_replica(replica), engine, wall_clock=True)
    # Nothing running: the log before now can only precede every step that will start, so
    # read from a few minutes back (clock skew) instead of the whole retention.
    since = running_since()
    if since is not None:
        await source.start(since=since)
    else:
        await source.start(since=time.time() - IDLE_LOOKBACK, must_rewind=False)
    for c in controllers:
        router = c.router.inner if isinstance(c.router, DryRunRouter) else c.router
        if isinstance(router, KubeRouter):
            supervisor.spawn(f"watch-{c.name}", _watcher(router, c, engine, is_leader, stop))
    supervisor.spawn("kafka-ingest", lambda: source.run(stop))
    rule_dir = RuleDirectory(rule_paths) if rule_paths else None
    if rule_dir is not None:
        rule_dir.poll()
    http = None
    if http_port:
        observed = Observed(
            engine,
            controllers,
            queues,
            source,
            is_leader,
            checks={
                "kafka": lambda: (
                    None
                    if source.consumer is not None and source.consumer.assignment()
                    else "no Kafka partitions assigned yet"
                ),
                "rollouts": lambda: (
                    "; ".join(f"{c.name}: {c.error}" for c in controllers if c.error) or None
                ),
            },
            rule_errors=lambda: len(rule_dir.errors) if rule_dir is not None else 0,
        )
        http = await serve_http(make_app(observed), "0.0.0.0", http_port)
    leading = is_leader()
    next_reload = time.monotonic() + 5.0
    try:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            listener.flush(controllers)
            rewind = is_leader() and not leading
            # Taking over: the windows were rebuilt from the steps' starts; read the log
            # again from there (records already folded are skipped by offset).
            if rule_dir is not None and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + 5.0
                reloaded = rule_dir.poll()
                if reloaded is not None:
                    swapped = _swap_controllers(
                        controllers, reloaded, dry_run, listener, api, queues
                    )
                    await engine.set_controllers(swapped)
                    controllers[:] = swapped
                    rewind = True  # new rules' windows fill from their steps' starts
            if rewind:
                since = running_since()
                if since is not None:
                    await source.rewind(since)
            leading = is_leader()
    finally:
        # SIGTERM: no new decisions, in-flight ones finish (10 s), notifications flush (10 s).
        await supervisor.shutdown(timeout=10)
        await source.stop()
        await engine.close()
        listener.flush(controllers)
        summary = await _summary(controllers)
        if supervisor.fatal is not None:
            print(f"stopping: {supervisor.fatal}", file=sys.stderr)
            summary.append(
                {
                    "name": "daemon",
                    "phase": "Error",
                    "canary_percent": None,
                    "weights": {},
                    "error": supervisor.fatal,
                    "decisions": [],
                }
            )
        if http is not None:
            await http.cleanup()
        if api is not None:
            await api.close()
    return summary


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    rule_paths = args.rules
    events = args.events
    if args.kafka:
        if not rule_paths:
            print("--kafka needs --rules", file=sys.stderr)
            return 2
        try:
            settings = KafkaSettings.from_env()
        except (ValueError, OSError) as exc:
            print(f"kafka settings: {exc}", file=sys.stderr)
            return 2
        # Everything imported so far lives as long as the process: out of the collector's
        # sight, full collections (which the Kafka client's per-record objects trigger every
        # few seconds) stop walking it. Rules and controllers come after, so the ones a reload
        # replaces are still collected. Measured on a million lines: 1.0 s of collections
        # down to 0.2 s, 16% more lines per second (bench/RESULTS.md, "Kafka ingest").
        gc.freeze()
        rollouts = asyncio.run(
            _run_kafka(
                _load_or_exit(rule_paths),
                settings,
                args.dry_run,
                Progress(sys.stdout),
                args.kubeconfig,
                args.lease_name,
                args.lease_namespace,
                args.http_port,
                [Path(p) for p in rule_paths],
            )
        )
        _print_summary(rollouts, sys.stdout)
        return 1 if any(r["name"] == "daemon" for r in rollouts) else 0
    if not rule_paths and events:
        print(
            "error: --events needs --rules: say which rule judges this log "
            "(run with neither for the bundled demo)",
            file=sys.stderr,
        )
        return 2
    if not rule_paths:
        demo = _demo_dir(args.workdir)
        print(f"demo: rules, manifest and access log copied to {demo}")
        rule_paths = [str(demo / "rule.yaml")]
        events = events or str(demo / "access-log.jsonl.gz")
    if not events:
        print("--events FILE|- is required with --rules", file=sys.stderr)
        return 2
    rules = _load_or_exit(rule_paths)
    for loaded in rules:
        print(
            f"rule {loaded.name}: {loaded.rule.spec.target.kind} "
            f"{loaded.rule.spec.target.namespace}/{loaded.rule.spec.target.name} "
            f"model {loaded.rule.spec.model}, steps {loaded.rule.spec.steps}"
        )
    print("time      rule  step  share  age  n=baseline/canary  checks  => verdict")
    started = time.monotonic()
    engine, controllers, _ = asyncio.run(
        _run_file(rules, events, args.dry_run, Progress(sys.stdout))
    )
    rollouts = asyncio.run(_summary(controllers))
    print()
    _print_summary(rollouts, sys.stdout)
    st = engine.stats.to_json()
    print(
        f"events: {st['accepted']} accepted, {st['ignored']} ignored, {st['rejected']} rejected"
        + (f" {st['rejected_by_reason']}" if st["rejected"] else "")
        + f" in {time.monotonic() - started:.1f}s"
    )
    return 1 if any(r["error"] for r in rollouts) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    rules = _load_or_exit(args.rules)
    engine, controllers, _ = asyncio.run(_run_file(rules, args.events, args.dry_run, None))
    rollouts = asyncio.run(_summary(controllers))
    doc = {"rollouts": rollouts, "events": engine.stats.to_json()}
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        for r in rollouts:
            for d in r["decisions"]:
                print(f"{_clock(d['at'])}  {r['name']}  {d['action']:<8} {d['reason']}")
        _print_summary(rollouts, sys.stdout)
        st = engine.stats.to_json()
        print(
            f"events: {st['accepted']} accepted, {st['rejected']} rejected "
            f"{st['rejected_by_reason']}"
        )
    return 1 if any(r["error"] for r in rollouts) else 0


def _targets_of(router: TrafficRouter) -> TargetsReader:
    async def read() -> Sequence[Target]:
        return (await router.read()).targets

    return read


async def _simulate(args: argparse.Namespace, rules: list[LoadedRule]) -> list[dict[str, Any]]:
    progress = Progress(sys.stdout)
    listener = ProgressListener(progress)
    controllers = _controllers(rules, args.dry_run, listener)
    engine = Engine(controllers)
    sims = [
        GatewaySimulator(
            _targets_of(c.router),
            TrafficProfile(
                model=c.spec.model,
                canary=frozenset(c.spec.canary),
                rps=args.rps,
                canary_ttft_factor=args.canary_ttft_factor,
                canary_error_rate=args.canary_error_rate,
                malformed_ratio=args.malformed_ratio,
            ),
            seed=args.seed + i,
        )
        for i, c in enumerate(controllers)
    ]
    t0 = float(args.start if args.start is not None else int(time.time()))
    record = Path(args.record).open("wb") if args.record else None  # noqa: SIM115
    wall0 = time.monotonic()
    try:
        await engine.start(t0)
        listener.flush(controllers)
        t = t0
        finished_at: float | None = None
        while t < t0 + args.max_duration:
            if engine.finished:
                finished_at = t if finished_at is None else finished_at
                if t >= finished_at + args.linger:
                    break
            lines: list[bytes] = []
            for sim in sims:
                lines.extend(await sim.second(t))
            lines.sort(key=_line_time)
            if record is not None:
                record.writelines(line + b"\n" for line in lines)
            await engine.feed_lines(lines)
            listener.flush(controllers)
            t += 1.0
            await engine.advance(t)
            listener.flush(controllers)
            if args.speed > 0:
                ahead = (t - t0) / args.speed - (time.monotonic() - wall0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        if record is not None:
            record.close()
        await engine.close()
    return await _summary(controllers)


def _line_time(line: bytes) -> str:
    # Simulated lines start with the ISO timestamp, so text order is time order.
    return line[:48].decode(errors="replace")


def cmd_simulate(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    rule_paths = args.rules
    if not rule_paths:
        demo = _demo_dir(args.workdir, DEMO_FILES[:2])
        print(f"demo: rules and manifest copied to {demo}")
        rule_paths = [str(demo / "rule.yaml")]
    rules = _load_or_exit(rule_paths)
    rollouts = asyncio.run(_simulate(args, rules))
    print()
    _print_summary(rollouts, sys.stdout)
    if args.json:
        print(orjson.dumps({"rollouts": rollouts}).decode())
    return 1 if any(r["error"] for r in rollouts) else 0


def cmd_rules_validate(args: argparse.Namespace) -> int:
    rules, errors = load_rules([Path(p) for p in args.paths])
    for err in errors:
        print(err)
    for r in rules:
        print(f"{r.source}:{r.line}: rule {r.name} ok")
    if not rules and not errors:
        print("no rule files found")
        return 2
    return 1 if errors else 0


def cmd_rules_schema(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The rollouts as recorded on their objects: one table row each, then its last checks."""
    rules = _load_or_exit(args.rules)

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
            table.append((loaded.name, "NotStarted", "-", "-", _weights(obj.targets)))
            continue
        state = RolloutState.loads(raw)
        table.append(
            (
                loaded.name,
                state.phase,
                f"{state.step + 1}/{len(state.steps)}",
                f"{state.canary_percent}%",
                _weights(obj.targets),
            )
        )
        last = state.history[-1] if state.history else None
        if last is not None:
            lines = [f"last: {last.action} at {_clock(last.at)}: {last.reason}"]
            lines += [f"  {_check_brief(c)}" for c in last.checks]
            details[loaded.name] = lines
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header) - 1)]
    for row in [header, *table]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
    for name, lines in details.items():
        print(f"\n{name}")
        for line in lines:
            print(f"  {line}")
    return 0


def cmd_override(args: argparse.Namespace) -> int:
    """Set the command annotation on the routed object; the daemon acts at its next judgment."""
    rules = [r for r in _load_or_exit(args.rules) if r.name == args.rule]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canary-analyzer", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--log-level",
            type=str.lower,
            choices=["debug", "info", "warning", "error", "critical"],
            default="warning",
            help="structured logs on stderr at this level and above (default: %(default)s)",
        )
        sp.add_argument("--log-format", choices=["auto", "console", "json"], default="auto")
        sp.add_argument("--dry-run", action="store_true", help="decide and report, write nothing")

    run = sub.add_parser("run", help="judge a live or recorded access log (embedded mode)")
    run.add_argument("--rules", action="append", help="rule file or directory (repeatable)")
    run.add_argument("--events", help="JSONL access log (.gz ok), or - for stdin")
    run.add_argument("--workdir", help="demo mode: where to copy the bundled files")
    run.add_argument("--kubeconfig", help="cluster mode: kubeconfig (default: in-cluster)")
    run.add_argument("--lease-name", default="canary-analyzer", help="leader-election Lease")
    run.add_argument(
        "--http-port", type=int, default=8080, help="/healthz /readyz /metrics; 0: off"
    )
    run.add_argument("--lease-namespace", help="default: $POD_NAMESPACE, else default")
    run.add_argument(
        "--kafka",
        action="store_true",
        help="consume the access log from Kafka (CANARY_ANALYZER_KAFKA_* settings)",
    )
    common(run)
    run.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="event-time replay of a recorded log, at full speed")
    rp.add_argument("--rules", action="append", required=True)
    rp.add_argument("--events", required=True)
    rp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    common(rp)
    rp.set_defaults(func=cmd_replay)

    sim = sub.add_parser("simulate", help="closed loop: a simulated gateway follows the weights")
    sim.add_argument("--rules", action="append")
    sim.add_argument("--workdir")
    sim.add_argument("--canary-ttft-factor", type=float, default=1.0)
    sim.add_argument("--canary-error-rate", type=float, default=None)
    sim.add_argument("--malformed-ratio", type=float, default=0.0)
    sim.add_argument("--rps", type=float, default=50.0)
    sim.add_argument("--speed", type=float, default=0.0, help="simulated s per wall s; 0 = max")
    sim.add_argument("--max-duration", type=float, default=3600.0, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", type=float, default=None, help="simulated start, epoch seconds")
    sim.add_argument("--record", help="also write the simulated access log here")
    sim.add_argument(
        "--linger", type=float, default=0.0, help="simulated seconds of traffic after the end"
    )
    sim.add_argument("--json", action="store_true")
    common(sim)
    sim.set_defaults(func=cmd_simulate)

    rules = sub.add_parser("rules", help="rule files")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    val = rsub.add_parser("validate", help="check rule files; exit 1 on any problem")
    val.add_argument("paths", nargs="+")
    val.set_defaults(func=cmd_rules_validate)
    sch = rsub.add_parser("schema", help="print the rule JSON Schema")
    sch.set_defaults(func=cmd_rules_schema)
    plancmd.add_parser(rsub)

    ov = sub.add_parser("override", help="pause, resume, abort or promote a rollout by hand")
    ov.add_argument("action", choices=list(COMMANDS))
    ov.add_argument("--rules", action="append", required=True)
    ov.add_argument("--rule", required=True, help="the rule's metadata.name")
    ov.add_argument("--reason", default="", help="shown in the decision and notifications")
    ov.add_argument("--kubeconfig")
    ov.set_defaults(func=cmd_override)

    st = sub.add_parser("status", help="rollouts recorded on the routed objects")
    st.add_argument("--rules", action="append", required=True)
    st.add_argument("--kubeconfig", help="for rules that route cluster objects")
    st.set_defaults(func=cmd_status)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # The reader (head, less) went away: stop quietly, as Unix tools do.
        devnull = open(os.devnull, "w")  # noqa: SIM115
        os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 141
    return result
