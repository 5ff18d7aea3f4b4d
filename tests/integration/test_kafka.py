"""Kafka ingestion against a real Kafka-protocol broker (tansu) started by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from analyzer.config import load_rules
from analyzer.notify.base import NoopNotifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.sources.kafka import KafkaSource
from analyzer.sources.kafkasettings import KafkaSettings
from analyzer.sources.parsepool import usable_cpus
from tests.conftest import fresh_demo, replay
from tests.servers.kafkabroker import Broker, create_topic, produce

pytestmark = pytest.mark.slow
CANARY = {f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4")}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("tansu"))
    b.start()
    yield b
    b.kill()


def _controller(work: Path) -> tuple[Engine, RolloutController]:
    loaded = load_rules([work / "rule.yaml"])[0][0]
    c = RolloutController(loaded, make_router(loaded), NoopNotifier())
    return Engine([c]), c


async def _consume_all(source: KafkaSource, expected: int, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while source.stats.records < expected and asyncio.get_running_loop().time() < deadline:
        await source.poll_once(timeout_ms=500)
    await source.flush()


def _settings(broker: Broker, topic: str, **kw: object) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        topics=(topic,),
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        **kw,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("parsing", ["in-process", "parse-process", "parse-process-killed"])
def test_kafka_reaches_the_decisions_of_a_file_replay(
    broker: Broker,
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    parsing: str,
) -> None:
    """Also with parsing in a second process, and when that process is killed (SIGKILL)
    before the first fetch: a lost worker costs nothing but speed."""
    log = simulated_log(canary_ttft_factor=1.4)
    lines = log.read_bytes().splitlines()
    topic = f"logs-{uuid.uuid4().hex[:6]}"
    file_doc = replay(fresh_demo(tmp_path / "file") / "rule.yaml", log, capsys=capsys)
    parse_process = "off" if parsing == "in-process" else "on"

    async def go() -> list[tuple[float, str]]:
        await create_topic(broker.bootstrap, topic)
        await produce(broker.bootstrap, topic, lines)
        engine, controller = _controller(fresh_demo(tmp_path / "kafka"))
        source = KafkaSource(_settings(broker, topic, parse_process=parse_process), engine)
        assert (source.pool is not None) == (parse_process == "on")
        await source.start()
        if parsing == "parse-process-killed":
            assert source.pool is not None
            loop = asyncio.get_running_loop()
            os.kill(await loop.run_in_executor(source.pool._pool(), os.getpid), signal.SIGKILL)
        await _consume_all(source, len(lines))
        await engine.finish()
        await source.stop()
        assert source.stats.released == len(lines)
        assert engine.stats.to_json() == file_doc["events"]
        if parsing == "parse-process-killed":
            assert source.pool is not None and source.pool.lost >= 1
        return [(d.at, d.action) for d in controller.decisions]

    got = asyncio.run(go())
    expected = [(d["at"], d["action"]) for d in file_doc["rollouts"][0]["decisions"]]
    assert got == expected
    assert got[-1][1] == "rollback"


def test_malformed_records_are_counted_and_dead_lettered(
    broker: Broker, tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()[:600]
    bad = [b"{not json", b'"a string"', lines[0].replace(b'"start_time"', b'"x"')]
    topic, dlq = f"logs-{uuid.uuid4().hex[:6]}", f"dlq-{uuid.uuid4().hex[:6]}"

    async def go() -> tuple[dict[str, int], list[tuple[bytes, dict[str, bytes]]]]:
        await create_topic(broker.bootstrap, topic)
        await create_topic(broker.bootstrap, dlq, partitions=1)
        await produce(broker.bootstrap, topic, lines + bad)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, None, key=b"k", partition=1)  # a tombstone
        await producer.stop()
        engine, _ = _controller(fresh_demo(tmp_path))
        source = KafkaSource(_settings(broker, topic, dead_letter_topic=dlq), engine)
        await source.start()
        await _consume_all(source, len(lines) + len(bad) + 1)
        await source.stop()
        consumer = AIOKafkaConsumer(
            dlq,
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            group_id="dlq-reader",
        )
        await consumer.start()
        got: list[tuple[bytes, dict[str, bytes]]] = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            got += [(r.value, dict(r.headers)) for recs in batch.values() for r in recs]
            if len(got) >= len(bad) + 1:
                break
        await consumer.stop()
        assert engine.stats.accepted == len(lines)
        # Each dead letter names where it came from: read that record back.
        reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await reader.start()
        for value, headers in got:
            where, offset = headers["source"].decode().rsplit("@", 1)
            tp = TopicPartition(topic, int(where.rsplit("/", 1)[1]))
            reader.assign([tp])
            reader.seek(tp, int(offset))
            original = await reader.getone()
            assert (original.value or b"") == value
        await reader.stop()
        return dict(engine.stats.rejected_by_reason), got

    reasons, dead = asyncio.run(go())
    assert reasons == {"not_json": 2, "not_object": 1, "missing_field.timestamp": 1}
    assert sorted(h["reason"] for _, h in dead) == [
        b"missing_field.timestamp",
        b"not_json",
        b"not_json",
        b"not_object",
    ]
    assert {v for v, _ in dead} == {*bad, b""}


def _event_time(line: bytes) -> float:
    return datetime.fromisoformat(orjson.loads(line)["start_time"]).timestamp()


def test_restart_mid_step_rebuilds_the_windows_from_the_step_start(
    broker: Broker,
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines()
    whole = replay(fresh_demo(tmp_path / "file") / "rule.yaml", log, capsys=capsys)
    topic = f"logs-{uuid.uuid4().hex[:6]}"
    work = fresh_demo(tmp_path / "kafka")
    head = len(lines) * 45 // 100
    stopped_at = _event_time(lines[head - 1])

    async def first() -> list[tuple[float, str]]:
        await create_topic(broker.bootstrap, topic)
        await produce(broker.bootstrap, topic, lines[:head])
        engine, controller = _controller(work)
        source = KafkaSource(_settings(broker, topic, idle_seconds=0.5), engine)
        await source.start()
        await _consume_all(source, head)
        await source.stop()
        assert controller.state is not None and controller.state.step == 1
        return [(d.at, d.action) for d in controller.decisions]

    before = asyncio.run(first())

    async def second() -> tuple[int, int, float, list[tuple[float, str]]]:
        engine, controller = _controller(work)
        await engine.start(stopped_at)  # the daemon comes back; the object has its state
        assert controller.state is not None and controller.windows is not None
        since = controller.state.step_started_at
        source = KafkaSource(_settings(broker, topic, idle_seconds=0.5), engine)
        await source.start(since=since)
        await _consume_all(source, head)  # the log up to where the first daemon stopped
        w = controller.windows
        counts = (
            w.warm_baseline.requests,
            w.warm_canary.requests,
            w.baseline.requests,
            w.canary.requests,
            w.evidence_from,
        )
        await produce(broker.bootstrap, topic, lines[head:])  # and the rest arrives
        await _consume_all(source, len(lines))
        await engine.finish()
        await source.stop()
        return counts, since, [(d.at, d.action) for d in controller.decisions]

    (warm_b, warm_c, baseline, canary, evidence_from), since, after = asyncio.run(second())
    assert evidence_from > since  # the rule's warm-up: its events are counted apart
    warm = [orjson.loads(ln) for ln in lines[:head] if since <= _event_time(ln) < evidence_from]
    window = [orjson.loads(ln) for ln in lines[:head] if _event_time(ln) >= evidence_from]
    assert warm_c == sum(r["target_model"] in CANARY for r in warm) > 0
    assert warm_b == sum(r["target_model"] not in CANARY for r in warm) > 0
    assert canary == sum(r["target_model"] in CANARY for r in window)
    assert baseline == sum(r["target_model"] not in CANARY for r in window)
    assert "start" not in [a for _, a in after]
    expected = [(d["at"], d["action"]) for d in whole["rollouts"][0]["decisions"]]
    assert before + after == expected


def test_broker_killed_and_restarted_mid_stream(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulated_log(canary_ttft_factor=1.4)
    lines = log.read_bytes().splitlines()
    whole = replay(fresh_demo(tmp_path / "file") / "rule.yaml", log, capsys=capsys)
    broker = Broker(tmp_path)
    broker.start()
    topic = "logs"
    half = len(lines) // 2

    async def go() -> tuple[list[tuple[float, str]], int]:
        await create_topic(broker.bootstrap, topic)
        await produce(broker.bootstrap, topic, lines[:half])
        engine, controller = _controller(fresh_demo(tmp_path / "kafka"))
        source = KafkaSource(_settings(broker, topic, idle_seconds=0.5), engine)
        await source.start()
        await _consume_all(source, half)
        broker.kill()  # mid-stream: the consumer keeps polling into the outage
        for _ in range(3):
            with contextlib.suppress(KafkaError):
                await source.poll_once(timeout_ms=300)
        broker.start()  # a single-node broker with memory storage comes back empty
        await create_topic(broker.bootstrap, topic)
        await produce(broker.bootstrap, topic, lines[half:])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while source.stats.released < len(lines) and loop.time() < deadline:
            try:
                await source.poll_once(timeout_ms=500)
            except KafkaError:
                await asyncio.sleep(0.5)
        await source.flush()
        await engine.finish()
        await source.stop()
        return [(d.at, d.action) for d in controller.decisions], source.stats.released

    try:
        decisions, released = asyncio.run(go())
    finally:
        broker.kill()
    # Nothing lost: every line reached the rollout at least once (a consumer that reconnects
    # may fetch records again); nothing counted twice: the windows skip re-reads, so
    # every judgment saw what the file replay saw and the decisions are the same, to the second.
    assert released >= len(lines)
    assert decisions == [(d["at"], d["action"]) for d in whole["rollouts"][0]["decisions"]]


def test_every_replica_reads_every_partition(
    broker: Broker, tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()[:300]
    topic = f"logs-{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(broker.bootstrap, (topic,), group_id=f"g-{uuid.uuid4().hex[:6]}")

    async def go() -> list[int]:
        await create_topic(broker.bootstrap, topic, 3)
        await produce(broker.bootstrap, topic, lines)
        replicas = []
        for name in ("analyzer-0", "analyzer-1"):  # two pods of one Deployment
            engine, _ = _controller(fresh_demo(tmp_path / name))
            source = KafkaSource(settings.for_replica(name), engine)
            await source.start()
            replicas.append(source)
        for source in replicas:
            await _consume_all(source, len(lines))
        for source in replicas:
            await source.poll_once(timeout_ms=300)
            await source.stop()
        return [s.stats.records for s in replicas]

    # Each replica read all three partitions, not a share of them.
    assert asyncio.run(go()) == [len(lines), len(lines)]
    assert settings.for_replica("analyzer-0").group_id == settings.group_id + "-analyzer-0"


def test_settings_from_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = KafkaSettings.from_env(
        {
            "CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "CANARY_ANALYZER_KAFKA_TOPICS": "gateway-logs, epp-logs",
            "CANARY_ANALYZER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CANARY_ANALYZER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CANARY_ANALYZER_KAFKA_SASL_USERNAME": "analyzer",
            "CANARY_ANALYZER_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "CANARY_ANALYZER_KAFKA_DEAD_LETTER_TOPIC": "logs-dlq",
            "CANARY_ANALYZER_KAFKA_PARSE_PROCESS": "off",
        }
    )
    assert s.parse_process == "off" and not s.parses_elsewhere
    assert s.topics == ("gateway-logs", "epp-logs") and s.sasl_password == "s3cret"
    opts = s.client_options()
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512" and "ssl_context" in opts
    with pytest.raises(ValueError, match="BOOTSTRAP_SERVERS"):
        KafkaSettings.from_env({})
    with pytest.raises(ValueError, match="auto, on or off"):
        KafkaSettings.from_env(
            {
                "CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS": "k1:9092",
                "CANARY_ANALYZER_KAFKA_TOPICS": "logs",
                "CANARY_ANALYZER_KAFKA_PARSE_PROCESS": "yes",
            }
        )


def test_a_parsing_process_only_where_two_cpus_are_usable(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")  # a container limited to one CPU
    assert usable_cpus(cpu_max) == min(1.0, len(os.sched_getaffinity(0)))
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) == len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_a_backlog_is_judged_on_every_partition(
    broker: Broker, tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """A backlog already in the topic, read in small fetches (that come one partition at a
    time): every judgment sees the samples a file replay of the same log sees."""
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines()
    topic = f"backlog-{uuid.uuid4().hex[:6]}"

    def judged(engine: Engine, controller: RolloutController) -> list[tuple[float, int, int]]:
        seen: list[tuple[float, int, int]] = []
        controller.on_judgment = lambda c, now, v: seen.append(
            (now, v.checks[0].n_baseline, v.checks[0].n_canary)
        )
        return seen

    async def from_file() -> list[tuple[float, int, int]]:
        engine, controller = _controller(fresh_demo(tmp_path / "file"))
        seen = judged(engine, controller)
        await engine.feed_lines([line + b"\n" for line in lines])
        return seen

    async def from_kafka() -> list[tuple[float, int, int]]:
        await create_topic(broker.bootstrap, topic)
        await produce(broker.bootstrap, topic, lines)
        engine, controller = _controller(fresh_demo(tmp_path / "kafka"))
        seen = judged(engine, controller)
        source = KafkaSource(
            _settings(broker, topic, max_records=100, idle_seconds=30.0, parse_process="off"),
            engine,
        )
        await source.start()
        await _consume_all(source, len(lines))
        await source.stop()
        return seen

    expected = asyncio.run(from_file())
    got = asyncio.run(from_kafka())
    assert len(expected) > 5
    assert got[: len(expected) - 1] == expected[: len(expected) - 1]
