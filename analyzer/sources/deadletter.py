"""Dead letters: malformed lines produced to a topic with why and where they came from, so an
SRE can read exactly what the analyzer refused. A no-op when no topic is set.

Must not: block ingestion on a failed send (it is counted and logged, the line is still
counted by reason).
"""

from __future__ import annotations

from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from analyzer.sources.kafkasettings import KafkaSettings

log = structlog.get_logger("analyzer.kafka")


class DeadLetters(Protocol):
    async def start(self) -> None: ...

    async def send(self, value: bytes, reason: str, source: str) -> bool:
        """Produce one refused line (``source``: topic/partition@offset); whether it went."""
        ...

    async def stop(self) -> None: ...


class NoDeadLetters:
    async def start(self) -> None:
        pass

    async def send(self, value: bytes, reason: str, source: str) -> bool:
        return False

    async def stop(self) -> None:
        pass


class DeadLetterTopic:
    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(**self.settings.client_options())
        await self.producer.start()

    async def send(self, value: bytes, reason: str, source: str) -> bool:
        if self.producer is None:
            return False
        headers = [("reason", reason.encode()), ("source", source.encode())]
        try:
            await self.producer.send(self.topic, value, headers=headers)
        except KafkaError as exc:
            log.warning("dead_letter_failed", reason=reason, error=type(exc).__name__)
            raise
        return True

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


def make_dead_letters(settings: KafkaSettings) -> DeadLetters:
    if settings.dead_letter_topic:
        return DeadLetterTopic(settings, settings.dead_letter_topic)
    return NoDeadLetters()
