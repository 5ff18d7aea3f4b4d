"""``run`` and ``replay``: judge a recorded or piped access log, or run the daemon on Kafka.

Must not: hold analysis logic; it loads rules, builds controllers and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import orjson

from analyzer.commands.htmlreport import recorder_if_asked, write_report
from analyzer.commands.recorder import JudgmentRecorder, fanout
from analyzer.commands.report import Progress, ProgressListener, clock, events_line, print_summary
from analyzer.config import LoadedRule
from analyzer.errors import SetupError
from analyzer.events.skew import DEFAULT_MAX_SKEW
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.daemon import Daemon, DaemonSettings
from analyzer.runtime.engine import Engine
from analyzer.runtime.summary import summarize
from analyzer.runtime.wiring import build_controllers, load_rule_files, without_log_readers
from analyzer.sources.kafkasettings import KafkaSettings
from analyzer.sources.replay import stream_batches
from analyzer.telemetry import configure_logging

DEMO_FILES = ("rule.yaml", "inferencemodel.yaml", "access-log.jsonl.gz")


def unreadable(events: str) -> str | None:
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


def demo_dir(workdir: str | None, names: Sequence[str] = DEMO_FILES) -> Path:
    """The bundled demo files copied to ``workdir``, or to a temporary folder removed when
    the process exits (a demo leaves nothing behind unless asked to)."""
    if workdir:
        target = Path(workdir)
    else:
        target = Path(tempfile.mkdtemp(prefix="canary-analyzer-demo-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    demo = resources.files("analyzer") / "demo"
    for name in names:
        with resources.as_file(demo / name) as src:
            shutil.copyfile(src, target / name)
    return target


@dataclass
class FileRun:
    engine: Engine
    controllers: list[RolloutController]
    stopped_at: float | None = None
    """Event time at which every rollout had finished and reading stopped (None: read all)."""


async def run_file(
    rules: list[LoadedRule],
    events: str,
    dry_run: bool,
    progress: Progress | None,
    max_skew: float = DEFAULT_MAX_SKEW,
    follow: bool = False,
    recorder: JudgmentRecorder | None = None,
) -> FileRun:
    listener = ProgressListener(progress) if progress else None
    controllers = build_controllers(rules, dry_run, fanout(listener, recorder))
    # After the rules and their secrets: what is wrong with them is the first thing to say.
    if (problem := unreadable(events)) is not None:
        raise SetupError([problem])
    engine = Engine(controllers, max_skew=max_skew)
    run = FileRun(engine, controllers)
    live = events == "-" or follow  # live: nothing in it can be from the future
    async for batch in stream_batches(events, follow=follow):
        await engine.feed_lines(batch, time.time() if live else None)
        if listener is not None:
            listener.flush(controllers)
        if engine.finished:
            run.stopped_at = engine.now
            break
    await engine.finish()
    await engine.close()
    if listener is not None:
        listener.flush(controllers)
    return run


DRY_RUN_BANNER = (
    "DRY RUN: decisions are made and reported; nothing is written to the routed objects"
)
FAILED_BACKTEST = 3
"""Exit status of a backtest (``--fail-on``) whose rollout ended the way it should not."""


def backtest_failures(rollouts: list[dict[str, Any]], fail_on: str | None) -> list[str]:
    """The rollouts that ended as ``fail_on`` says a backtest must not: rolled back, still
    undecided at the end of the log (inconclusive), or anything but promoted (any)."""
    if fail_on is None:
        return []
    out = []
    for r in rollouts:
        phase = r["phase"]
        bad = {
            "rollback": phase == "RolledBack",
            "inconclusive": phase not in ("Succeeded", "RolledBack"),
            "any": phase != "Succeeded",
        }[fail_on]
        if bad:
            out.append(f"{r['name']}: {phase}")
    return out


def exit_status(rollouts: list[dict[str, Any]], failed: Sequence[str] = ()) -> int:
    """1 when a rollout could not run, else 3 when a backtest failed its ``--fail-on``, else 0."""
    if any(r["error"] for r in rollouts):
        return 1
    return FAILED_BACKTEST if failed else 0


def print_failures(failed: Sequence[str], fail_on: str | None, out: TextIO) -> None:
    for line in failed:
        print(f"backtest failed (--fail-on {fail_on}): {line}", file=out)


def notes(run: FileRun) -> list[str]:
    """What a person should know about how much of the log was judged."""
    out = []
    if run.stopped_at is not None:
        out.append(
            f"every rollout finished by {clock(run.stopped_at)}; the rest of the log was not read"
        )
    for c in run.controllers:
        if not c.announced and c.state is not None and c.state.finished:
            out.append(
                f"rule {c.name}: the rollout recorded on the object already finished "
                f"({c.state.phase}); nothing was judged (remove its state annotation to start over)"
            )
    return out


def cmd_run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    rule_paths = args.rules
    events = args.events
    if args.kafka or (rule_paths and not events):
        return _daemon(args, rule_paths)
    if args.kubeconfig:
        print(
            "error: --kubeconfig is for the cluster daemon (run --kafka, or run --rules alone "
            "for rules whose checks all query Prometheus); a rule whose target has file: is "
            "judged without a cluster",
            file=sys.stderr,
        )
        return 2
    if not rule_paths and events:
        print(
            "error: --events needs --rules: say which rule judges this log "
            "(run with neither for the bundled demo)",
            file=sys.stderr,
        )
        return 2
    if not rule_paths:
        demo = demo_dir(args.workdir)
        kept = "" if args.workdir else " (removed at exit; --workdir DIR keeps them)"
        print(f"demo: rules, manifest and access log copied to {demo}{kept}")
        rule_paths = [str(demo / "rule.yaml")]
        events = events or str(demo / "access-log.jsonl.gz")
    if not events:
        print("--events FILE|- is required with --rules", file=sys.stderr)
        return 2
    if args.follow and (events == "-" or events.endswith(".gz")):
        print(
            "error: --follow reads a growing plain file (tail -F); stdin is followed anyway "
            "and a .gz file cannot grow",
            file=sys.stderr,
        )
        return 2
    rules = load_rule_files(rule_paths)
    for loaded in rules:
        print(
            f"rule {loaded.name}: {loaded.rule.spec.target.kind} "
            f"{loaded.rule.spec.target.namespace}/{loaded.rule.spec.target.name} "
            f"model {loaded.rule.spec.model}, steps {loaded.rule.spec.steps}"
        )
    if args.dry_run:
        print(DRY_RUN_BANNER)
    print("time      rule  step  share  age  n=baseline/canary  checks  => verdict")
    started = time.monotonic()
    run = asyncio.run(
        run_file(
            rules, events, args.dry_run, Progress(sys.stdout), args.max_event_skew, args.follow
        )
    )
    rollouts = asyncio.run(summarize(run.controllers))
    print()
    print_summary(rollouts, sys.stdout)
    for note in notes(run):
        print(note)
    print(events_line(run.engine.stats, time.monotonic() - started))
    return exit_status(rollouts)


def cmd_replay(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    rules = load_rule_files(args.rules)
    recorder = recorder_if_asked(args.report, args.report_png)
    run = asyncio.run(
        run_file(rules, args.events, args.dry_run, None, args.max_event_skew, recorder=recorder)
    )
    rollouts = asyncio.run(summarize(run.controllers))
    failed = backtest_failures(rollouts, args.fail_on)
    doc: dict[str, Any] = {
        "rollouts": rollouts,
        "events": run.engine.stats.to_json(),
        "dry_run": args.dry_run,
        "stopped_at": run.stopped_at,
        "notes": notes(run),
        "backtest_failed": failed,
    }
    if recorder is not None:
        doc["report"] = write_report(args.report, args.report_png, doc, recorder)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        if args.dry_run:
            print(DRY_RUN_BANNER)
        for r in rollouts:
            for d in r["decisions"]:
                print(f"{clock(d['at'])}  {r['name']}  {d['action']:<8} {d['reason']}")
        print_summary(rollouts, sys.stdout)
        for note in notes(run):
            print(note)
        print(events_line(run.engine.stats))
        for path in doc.get("report", ()):
            print(f"report: {path}")
        print_failures(failed, args.fail_on, sys.stdout)
    return exit_status(rollouts, failed)


def _daemon(args: argparse.Namespace, rule_paths: list[str] | None) -> int:
    """The cluster daemon: Kafka in, or (rules whose checks all query Prometheus, no access
    log to read) the wall clock alone."""
    if not rule_paths:
        print("--kafka needs --rules", file=sys.stderr)
        return 2
    kafka: KafkaSettings | None = None
    if args.kafka:
        try:
            kafka = KafkaSettings.from_env()
        except (ValueError, OSError) as exc:
            print(f"kafka settings: {exc}", file=sys.stderr)
            return 2
    # Everything imported so far lives as long as the process: out of the collector's
    # sight, full collections (which the Kafka client's per-record objects trigger every
    # few seconds) stop walking it. Rules and controllers come after, so the ones a reload
    # replaces are still collected. Measured on a million lines: 1.0 s of collections
    # down to 0.2 s, 16% more lines per second (bench/RESULTS.md, "Kafka ingest").
    gc.freeze()
    rules = load_rule_files(rule_paths)
    _, refused = without_log_readers(rules, reads_log=kafka is not None)
    for problem in refused:
        print(f"error: {problem}; or judge a log with --events FILE|-", file=sys.stderr)
    if refused:
        return 2
    if kafka is None:
        print("no access log: every check queries Prometheus; judging on the wall clock")
    daemon = Daemon(
        DaemonSettings(
            rules,
            kafka,
            args.dry_run,
            args.kubeconfig,
            args.lease_name,
            args.lease_namespace,
            args.http_port,
            [Path(p) for p in rule_paths],
            args.max_event_skew,
            args.http_host,
        ),
        ProgressListener(Progress(sys.stdout)),
    )
    rollouts = asyncio.run(daemon.run())
    if daemon.supervisor.fatal is not None:
        print(f"stopping: {daemon.supervisor.fatal}", file=sys.stderr)
    print_summary(rollouts, sys.stdout)
    return 1 if any(r["name"] == "daemon" for r in rollouts) else 0
