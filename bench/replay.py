"""Replay throughput: how fast canary-analyzer folds and judges a recorded access log.

Generates N Envoy-style access-log lines (default 100,000; 90/10 baseline/canary split, 50 rps of
event time) with the simulator, then in the same run measures:
  (a) reading the file and decoding every line with orjson (the floor any JSON replay pays),
  (b) `canary-analyzer replay`'s path: parse with the rule's field map, fold into windows, judge
      every 10 s of event time, write decisions to the manifest.
Prints events/s for both, the ratio b/a, and peak RSS. Run: python bench/replay.py [N]
[--json-format]: the lines as Envoy's json_format writes them (every value a string, an unset
one "-"; here the token counts, as when the gateway does not log them).
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from analyzer.config import load_rules
from analyzer.notify.base import NoopNotifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.simulator.gateway import GatewaySimulator, TrafficProfile
from analyzer.sources.replay import iter_batches

DEMO = Path(__file__).resolve().parents[1] / "analyzer" / "demo"
CANARY = frozenset(f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4"))


def _as_json_format(line: bytes) -> bytes:
    record = orjson.loads(line)
    unset = ("prompt_tokens", "completion_tokens")
    return orjson.dumps({k: "-" if v is None or k in unset else str(v) for k, v in record.items()})


async def _generate(path: Path, n: int, json_format: bool) -> None:
    targets = [(a, 2) for a in sorted(CANARY)] + [
        (f"sql-lora{s}", 18) for s in ("", "-1", "-2", "-3", "-4")
    ]

    async def read() -> list[tuple[str, int | None]]:
        return list(targets)

    sim = GatewaySimulator(read, TrafficProfile(model="lora-request", canary=CANARY), seed=3)
    t = 1795662000.0
    written = 0
    with path.open("wb") as fh:
        while written < n:
            lines = (await sim.second(t))[: n - written]
            if json_format:
                lines = [_as_json_format(line) for line in lines]
            fh.writelines(line + b"\n" for line in lines)
            written += len(lines)
            t += 1.0


def _decode_only(path: Path) -> int:
    count = 0
    for batch in iter_batches(path):
        for line in batch:
            orjson.loads(line)
            count += 1
    return count


async def _replay(path: Path, work: Path) -> tuple[int, str]:
    rules, errors = load_rules([work / "rule.yaml"])
    assert not errors
    # A rule that keeps judging for the whole log: very long steps, never promotes early.
    controller = RolloutController(rules[0], make_router(rules[0]), NoopNotifier())
    engine = Engine([controller])
    for batch in iter_batches(path):
        await engine.feed_lines(batch)
    await engine.finish()
    phase = controller.state.phase if controller.state else "none"
    return engine.stats.accepted, phase


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    json_format = "--json-format" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("rule.yaml", "inferencemodel.yaml"):
            shutil.copyfile(DEMO / name, work / name)
        rule = work / "rule.yaml"
        rule.write_text(
            rule.read_text()
            .replace("minStepDuration: 60s", "minStepDuration: 100h")
            .replace("maxStepDuration: 10m", "maxStepDuration: 100h")
        )
        log = work / "access.jsonl"
        asyncio.run(_generate(log, n, json_format))
        size = log.stat().st_size
        t0 = time.perf_counter()
        decoded = _decode_only(log)
        t_decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        accepted, phase = asyncio.run(_replay(log, work))
        t_replay = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shape = "json_format" if json_format else "typed"
    print(f"lines: {n} {shape} ({size / n:.0f} bytes each), event time {n / 50:.0f} s at 50 rps")
    print(f"(a) read + orjson.loads:   {decoded / t_decode:>10,.0f} lines/s  ({t_decode:.2f} s)")
    print(f"(b) replay parse+fold+judge: {accepted / t_replay:>8,.0f} events/s ({t_replay:.2f} s)")
    print(
        f"ratio b/a: {t_decode / t_replay:.2f}   final phase: {phase}   peak RSS: {rss_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
