"""``simulate``: a closed loop, a generated gateway following the weights the analyzer writes.

Must not: write the user's files other than ``--record`` (and the manifests, with
``--in-place``): by default each rule routes a copy of its manifest.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from analyzer.commands.htmlreport import recorder_if_asked, write_report
from analyzer.commands.recorder import JudgmentRecorder, fanout
from analyzer.commands.report import Progress, ProgressListener, print_summary
from analyzer.commands.run import (
    DEMO_FILES,
    DRY_RUN_BANNER,
    backtest_failures,
    demo_dir,
    exit_status,
    print_failures,
)
from analyzer.config import LoadedRule
from analyzer.rollout.weights import Target
from analyzer.routers.base import TrafficRouter
from analyzer.runtime.engine import Engine
from analyzer.runtime.summary import summarize
from analyzer.runtime.wiring import build_controllers, load_rule_files
from analyzer.simulator.gateway import GatewaySimulator, TargetsReader, TrafficProfile
from analyzer.telemetry import configure_logging


def _targets_of(router: TrafficRouter) -> TargetsReader:
    async def read() -> Sequence[Target]:
        return (await router.read()).targets

    return read


async def _simulate(
    args: argparse.Namespace, rules: list[LoadedRule], recorder: JudgmentRecorder | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    # With --json, stdout carries the JSON document only; the live lines go to stderr.
    progress = Progress(sys.stderr if args.json else sys.stdout)
    listener = ProgressListener(progress)
    controllers = build_controllers(rules, args.dry_run, fanout(listener, recorder))
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
                pool=None if c.spec.target.kind == "HTTPRoute" else "vllm-pool",
                namespace=c.spec.target.namespace,
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
    return await summarize(controllers), engine.stats.to_json()


def on_copies(rules: list[LoadedRule], where: Path) -> list[LoadedRule]:
    """The rules, each routing a copy (under ``where``) of the manifest it names; rules that
    share a manifest share its copy."""
    copies: dict[Path, Path] = {}
    out = []
    for loaded in rules:
        source = loaded.manifest_path
        if source is None or not source.is_file():
            out.append(loaded)  # nothing to copy: the router says what is wrong
            continue
        resolved = source.resolve()
        if resolved not in copies:
            copies[resolved] = where / f"{len(copies)}-{source.name}"
            shutil.copyfile(source, copies[resolved])
        spec = loaded.rule.spec
        target = spec.target.model_copy(update={"file": str(copies[resolved])})
        rule = loaded.rule.model_copy(update={"spec": spec.model_copy(update={"target": target})})
        out.append(replace(loaded, rule=rule))
    return out


def _line_time(line: bytes) -> str:
    # Simulated lines start with the ISO timestamp, so text order is time order.
    return line[:48].decode(errors="replace")


def cmd_simulate(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    out = sys.stderr if args.json else sys.stdout
    rule_paths = args.rules
    if not rule_paths:
        demo = demo_dir(args.workdir, DEMO_FILES[:2])
        kept = "" if args.workdir else " (removed at exit; --workdir DIR keeps them)"
        print(f"demo: rules and manifest copied to {demo}{kept}", file=out)
        rule_paths = [str(demo / "rule.yaml")]
    rules = load_rule_files(rule_paths)
    recorder = recorder_if_asked(args.report, args.report_png)
    if args.dry_run:
        print(DRY_RUN_BANNER, file=out)
    with tempfile.TemporaryDirectory(prefix="canary-analyzer-simulate-") as scratch:
        if args.rules and not args.in_place:
            rules = on_copies(rules, Path(scratch))
            print("simulate: weights go to copies of the manifests (--in-place: to them)", file=out)
        rollouts, events = asyncio.run(_simulate(args, rules, recorder))
    failed = backtest_failures(rollouts, args.fail_on)
    doc: dict[str, Any] = {
        "rollouts": rollouts,
        "events": events,
        "dry_run": args.dry_run,
        "backtest_failed": failed,
    }
    if recorder is not None:
        doc["report"] = write_report(args.report, args.report_png, doc, recorder)
    print(file=out)
    print_summary(rollouts, out)
    for path in doc.get("report", ()):
        print(f"report: {path}", file=out)
    print_failures(failed, args.fail_on, out)
    if args.json:
        print(orjson.dumps(doc).decode())
    return exit_status(rollouts, failed)
