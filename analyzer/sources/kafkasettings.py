"""The Kafka source's settings: from CANARY_ANALYZER_KAFKA_* variables, per replica, as client
options.

Must not: connect to anything.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from analyzer.sources.parsepool import usable_cpus


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str = "canary-analyzer"
    client_id: str = "canary-analyzer"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    dead_letter_topic: str | None = None
    max_records: int = 50_000
    idle_seconds: float = 2.0
    max_buffered: int = 200_000
    assignment_timeout: float = 30.0
    """How long ``start(since=...)`` waits for the group to assign partitions."""
    parse_process: Literal["auto", "on", "off"] = "auto"
    """Parse in a second process: "auto" does when this process may use two CPUs or more."""
    connect_timeout: float = 60.0
    """How long the start retries a broker it cannot reach before giving up (a pod started
    with its broker, or during a broker restart, waits for it)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> KafkaSettings:
        """CANARY_ANALYZER_KAFKA_* variables (see README, "Kafka")."""

        def get(name: str) -> str | None:
            value = env.get(f"CANARY_ANALYZER_KAFKA_{name}")
            return value or None

        password = get("SASL_PASSWORD")
        password_file = get("SASL_PASSWORD_FILE")
        if password is None and password_file is not None:
            with open(password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        bootstrap = get("BOOTSTRAP_SERVERS")
        topics = get("TOPICS")
        if not bootstrap or not topics:
            raise ValueError(
                "set CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS and CANARY_ANALYZER_KAFKA_TOPICS"
            )
        return cls(
            bootstrap_servers=bootstrap,
            topics=tuple(t.strip() for t in topics.split(",") if t.strip()),
            group_id=get("GROUP_ID") or "canary-analyzer",
            client_id=get("CLIENT_ID") or "canary-analyzer",
            security_protocol=get("SECURITY_PROTOCOL") or "PLAINTEXT",
            sasl_mechanism=get("SASL_MECHANISM"),
            sasl_username=get("SASL_USERNAME"),
            sasl_password=password,
            ssl_cafile=get("SSL_CAFILE"),
            dead_letter_topic=get("DEAD_LETTER_TOPIC"),
            parse_process=_parse_process(get("PARSE_PROCESS") or "auto"),
            connect_timeout=_seconds(get("CONNECT_TIMEOUT") or "60", "CONNECT_TIMEOUT"),
        )

    @property
    def parses_elsewhere(self) -> bool:
        if self.parse_process == "auto":
            return usable_cpus() >= 2
        return self.parse_process == "on"

    def for_replica(self, replica: str) -> KafkaSettings:
        """The settings of one daemon replica: its own consumer group, ``<group>-<replica>``.

        Replicas must not share a group: the group would split the partitions between them,
        and each would see a part of the traffic, while a rollout's windows need every event
        (and a standby must be ready to take over). With a group per replica, every replica
        reads every partition; a restarted pod (same name) resumes from its commits.
        """
        return replace(self, group_id=f"{self.group_id}-{replica}")

    def client_options(self) -> dict[str, object]:
        opts: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return opts


def _parse_process(value: str) -> Literal["auto", "on", "off"]:
    if value not in ("auto", "on", "off"):
        raise ValueError(f"CANARY_ANALYZER_KAFKA_PARSE_PROCESS is {value!r}: auto, on or off")
    return value  # type: ignore[return-value]


def _seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"CANARY_ANALYZER_KAFKA_{name} must be seconds (a number >= 0): {value!r}")
    return seconds
