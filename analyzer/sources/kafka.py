"""Kafka ingestion: gateway access-log lines from a topic into the rollouts' windows.

Every daemon replica consumes with its own consumer group (``KafkaSettings.for_replica``), so
every replica reads every partition.

With two usable CPUs, lines are parsed in a second process (parsepool.py) while the consumer
fetches the next batch; results are folded in fetch order, so nothing else changes.

Delivery semantics: at-least-once from Kafka, exactly-once into windows.
- Offsets are committed periodically for lag monitoring, but they are not what a restart relies
  on: a restarted daemon seeks every partition to the earliest start of a running step
  (``offsets_for_times``; from the beginning where the broker cannot look up times) and rebuilds
  the windows from the log. Events before a step's start are skipped by event time.
- A record read twice (a rewind, a rebalance, a reconnect) is folded once: windows keep, per
  partition, the highest offset folded and skip records at or below it (windows.py).
- Records from several partitions are merged in event-time order with a low watermark: an event
  is released to the rollouts only when every active partition has reached its time (idle
  partitions stop holding it back after ``idle_seconds``). So a judgment at time T sees exactly
  the events up to T, as a replay of the same log from a file does, and reaches the same
  decisions.
- Malformed lines are counted by reason (the same counters as the file source) and, if a
  dead-letter topic is set, produced there with the reason in a ``reason`` header.
- Broker outages: the client reconnects by itself; errors around it are logged, counted and
  retried with backoff; the buffer is bounded (``max_buffered``), and the rollouts hold meanwhile
  (no data is not a pass).

Must not: parse fields itself (the engine's parsers do) or decide anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from analyzer.errors import SetupError
from analyzer.events.access import ParseStats
from analyzer.events.columns import Columns, IntArray
from analyzer.events.ruleset import RuleSetParser
from analyzer.sources.deadletter import make_dead_letters
from analyzer.sources.kafkasettings import KafkaSettings
from analyzer.sources.ordering import EventTimeBuffer
from analyzer.sources.parsepool import ParsePool

log = structlog.get_logger("analyzer.kafka")
_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")


class EventSink(Protocol):
    """What the source feeds: the runtime's engine (parsing, routing, event-time clock)."""

    @property
    def started(self) -> bool: ...

    @property
    def parser(self) -> RuleSetParser:
        """The rule set's parser (replaced when the rules change)."""
        ...

    async def advance(self, now: float) -> None: ...

    async def feed(self, cols: Columns, wall: float | None = None) -> None: ...

    def screen(
        self, cols: Columns, wall: float | None = None
    ) -> tuple[Columns, list[tuple[int, str]]]:
        """The rows the event clock can believe, and (row, reason) of the others."""
        ...

    def count_parsed(self, counts: ParseStats) -> None:
        """Add the counts of lines parsed elsewhere (a parsing process)."""
        ...


@dataclass
class IngestStats:
    records: int = 0
    released: int = 0
    dead_lettered: int = 0
    errors: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    """Per partition ("topic/partition"): high watermark minus position."""
    events_per_second: float = 0.0


def _no_tombstones(values: list[bytes | None]) -> list[bytes]:
    """Tombstones (no value) are parsed, and rejected, as empty lines."""
    if None in values:
        return [v or b"" for v in values]
    return values  # type: ignore[return-value]


def _offsets(records: list[Any]) -> npt.NDArray[np.int64]:
    """The records' offsets. Within a partition they only increase, so when the first and the
    last are len - 1 apart there is no gap (no compaction, no transaction markers) between."""
    if not records:
        return np.empty(0, dtype=np.int64)
    first, last = records[0].offset, records[-1].offset
    if last - first + 1 == len(records):
        return np.arange(first, last + 1, dtype=np.int64)
    return np.fromiter(map(_OFFSET, records), np.int64, count=len(records))


class KafkaSource:
    def __init__(
        self,
        settings: KafkaSettings,
        engine: EventSink,
        *,
        wall_clock: bool = False,
        watermark_delay: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.wall_clock = wall_clock
        self.watermark_delay = watermark_delay
        self.clock = clock
        self.stats = IngestStats()
        self.consumer: AIOKafkaConsumer | None = None
        self.dead_letters = make_dead_letters(settings)
        self.buffer = EventTimeBuffer(settings.idle_seconds, settings.max_buffered)
        self.pool = ParsePool() if settings.parses_elsewhere else None
        self._parsing: deque[tuple[TopicPartition, list[bytes], IntArray, asyncio.Task[Any]]]
        self._parsing = deque()
        self._rate_window: tuple[float, int] = (clock(), 0)

    async def start(self, since: float | None = None, *, must_rewind: bool = True) -> None:
        """Connect; with ``since``, read every partition from that event time on. Without
        ``must_rewind``, a topic with no partitions to assign yet is not an error: reading
        starts where the group left off, or at the beginning, once they appear."""
        s = self.settings
        await self._connect()
        await self.dead_letters.start()
        if self.pool is not None:
            await self.pool.start(self.engine.parser)
        if since is not None:
            try:
                await self._wait_for_assignment(s.assignment_timeout)
            except KafkaError:
                if must_rewind:
                    raise
                log.warning("kafka_rewind_skipped", since=since, reason="no partitions assigned")
                return
            await self.rewind(since)

    async def _connect(self) -> None:
        """Start the consumer, retrying an unreachable broker with backoff for
        ``connect_timeout`` seconds; then a SetupError that names the setting to check."""
        s = self.settings
        deadline = time.monotonic() + s.connect_timeout
        delay = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                *s.topics,
                group_id=s.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=16 * 1024 * 1024,
                **s.client_options(),
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                await consumer.stop()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SetupError(
                        [
                            f"kafka: cannot reach {s.bootstrap_servers} "
                            f"({type(exc).__name__}) after {s.connect_timeout:g} s; check "
                            "CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS and that the broker is up"
                        ]
                    ) from None
                log.warning("kafka_unreachable", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(min(delay, left))
                delay = min(10.0, delay * 2)
                continue
            self.consumer = consumer
            return

    def not_ready(self) -> str | None:
        """Why the source cannot feed the rollouts yet (readiness), or None."""
        if self.consumer is None or not self.consumer.assignment():
            return "no Kafka partitions assigned yet"
        return None

    async def _wait_for_assignment(self, timeout: float) -> None:
        assert self.consumer is not None
        deadline = time.monotonic() + timeout
        while not self.consumer.assignment() and time.monotonic() < deadline:
            await self.consumer.getmany(timeout_ms=200, max_records=1)
            if self.consumer.assignment():
                # getmany may have fetched records already: forget where it got to.
                break
        if not self.consumer.assignment():
            raise KafkaError(f"no partitions assigned within {timeout:g} s")

    async def rewind(self, since: float) -> None:
        """Seek every assigned partition to the first record at or after ``since``."""
        assert self.consumer is not None
        parts = sorted(self.consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        found = await self.consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
        for tp in parts:
            hit = found.get(tp)
            if hit is None:
                self.consumer.seek_to_end(tp)
            elif hit.timestamp is None or hit.timestamp < 0:
                # The broker could not look the time up: read from the start, skip by time.
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, hit.offset)
        log.info("kafka_rewound", since=since, partitions=len(parts))

    async def poll_once(self, timeout_ms: int = 1000) -> int:
        """Fetch once; the fetch is parsed into columns and what the watermark releases is
        folded in event-time order. Returns the records fetched."""
        assert self.consumer is not None
        batches = await self.consumer.getmany(
            timeout_ms=timeout_ms, max_records=self.settings.max_records
        )
        now = self.clock()
        # Every assigned partition holds the watermark until it delivers (or stays idle): a
        # backlog's first fetches must not be judged on one partition's events.
        self.buffer.expect((f"{tp.topic}/{tp.partition}" for tp in self.consumer.assignment()), now)
        # Keep only values and offsets: the client's record objects are freed before parsing,
        # so they are not walked by the garbage collections that parsing triggers.
        fetched = [
            (tp, _no_tombstones(list(map(_VALUE, records))), _offsets(records))
            for tp, records in batches.items()
        ]
        batches.clear()
        count = sum(len(values) for _, values, _ in fetched)
        parser = self.engine.parser
        if self.pool is not None:
            for tp, values, offsets in fetched:
                job = asyncio.ensure_future(self.pool.parse(parser, values))
                self._parsing.append((tp, values, offsets, job))
            # The worker parses this fetch while the client fetches the next one: take in
            # what it finished before (everything, when nothing new came).
            await self._take_parsed(keep=len(fetched), now=now)
        else:
            await asyncio.sleep(0)  # the client asks for the next fetch while this one is parsed
            for tp, values, offsets in fetched:
                cols = parser.parse(values)
                await self._parsed(tp, values, offsets, cols, parser.rejected, now)
                await asyncio.sleep(0)
        self._counted(now, count)
        await self._release_columns(self.buffer.watermark(now))
        return count

    async def _take_parsed(self, keep: int, now: float) -> None:
        """Fold the worker's results in submission order, leaving the last ``keep`` running."""
        while len(self._parsing) > keep:
            tp, values, offsets, job = self._parsing.popleft()
            cols, rejected, counts = await job
            self.engine.count_parsed(counts)
            await self._parsed(tp, values, offsets, cols, rejected, now)

    async def _parsed(
        self,
        tp: TopicPartition,
        values: list[bytes],
        offsets: IntArray,
        cols: Columns,
        rejected: list[tuple[int, str]],
        now: float,
    ) -> None:
        """One partition's share of a fetch, parsed: dead letters out, columns in the buffer."""
        assert self.consumer is not None
        key = f"{tp.topic}/{tp.partition}"
        # Before the buffer: a row dated far ahead would hold its partition's watermark there.
        cols, skewed = self.engine.screen(cols, self._wall())
        for i, reason in [*rejected, *skewed]:
            await self._dead_letter(values[i], reason, f"{key}@{int(offsets[i])}")
        if len(cols):
            cols.locate(key, offsets[cols.index])
        self.buffer.add(key, cols, now, delivered=len(offsets) > 0)
        if len(offsets):
            hw = self.consumer.highwater(tp)
            if hw is not None:
                self.stats.lag[key] = max(0, hw - (int(offsets[-1]) + 1))

    def _counted(self, now: float, count: int) -> None:
        self.stats.records += count
        self._update_rate(now, count)

    async def _release_columns(self, limit: float) -> None:
        released = self.buffer.release(limit)
        if released is not None:
            await self.engine.feed(released, self._wall())
            self.stats.released += len(released)
        if self.wall_clock and self.engine.started:
            await self.engine.advance(self.clock() - self.watermark_delay)

    async def flush(self) -> None:
        """Release everything buffered (end of a bounded run)."""
        await self._take_parsed(keep=0, now=self.clock())
        await self._release_columns(float("inf"))

    async def _dead_letter(self, value: bytes, reason: str, source: str) -> None:
        try:
            if await self.dead_letters.send(value, reason, source):
                self.stats.dead_lettered += 1
        except KafkaError:
            self.stats.errors += 1

    def _wall(self) -> float | None:
        """Wall time for the engine's skew screen, when the source is live."""
        return self.clock() if self.wall_clock else None

    def _update_rate(self, now: float, count: int) -> None:
        since, seen = self._rate_window
        seen += count
        if now - since >= 5.0:
            self.stats.events_per_second = seen / (now - since)
            self._rate_window = (now, 0)
        else:
            self._rate_window = (since, seen)

    async def commit(self) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit()
        except KafkaError as exc:
            self.stats.errors += 1
            log.warning("kafka_commit_failed", error=type(exc).__name__)

    async def run(
        self,
        stop: asyncio.Event,
        commit_every: float = 5.0,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        """Consume until ``stop`` is set; broker errors are retried with backoff; ``beat``
        is called every time round (the daemon's liveness)."""
        backoff = 0.5
        last_commit = time.monotonic()
        while not stop.is_set():
            beat()
            try:
                await self.poll_once()
                backoff = 0.5
                if time.monotonic() - last_commit >= commit_every:
                    await self.commit()
                    last_commit = time.monotonic()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                self.stats.errors += 1
                log.warning("kafka_error", error=type(exc).__name__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)

    async def stop(self) -> None:
        for *_, job in self._parsing:
            job.cancel()
        self._parsing.clear()
        if self.pool is not None:
            await self.pool.close()
        if self.consumer is not None:
            await self.consumer.stop()
        await self.dead_letters.stop()
