"""Fixtures of the fault suite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from analyzer.simulator.gateway import GatewaySimulator, TrafficProfile
from tests.conftest import START
from tests.integration.test_kube_router import BASELINE, CANARY


@pytest.fixture(scope="session")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 minutes of a healthy canary at a fixed half of the traffic (the simulated gateway
    reads fixed weights): a rollout the API held up still has both groups' traffic to finish
    on, as a live one would. (A closed-loop log follows the undisturbed rollout's weights and
    has no baseline left after its promotion.)"""
    profile = TrafficProfile("lora-request", frozenset(CANARY), rps=50.0)

    async def fixed() -> list[tuple[str, int | None]]:
        return [(a, 10) for a in CANARY + BASELINE]

    async def record() -> list[bytes]:
        gateway = GatewaySimulator(fixed, profile, seed=3)
        start = float(START)
        return [line for s in range(720) for line in await gateway.second(start + s)]

    log = tmp_path_factory.mktemp("open-loop") / "access.jsonl"
    log.write_bytes(b"\n".join(asyncio.run(record())) + b"\n")
    return log
