"""Shared fixtures: fresh copies of the bundled demo, closed-loop simulated access logs, and
the whole system around the daemon (tests/servers/world.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.cli import main
from tests.servers.world import World, open_world

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "analyzer" / "demo"
START = "1795662000"


def fresh_demo(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in ("rule.yaml", "inferencemodel.yaml"):
        shutil.copyfile(DEMO / name, where / name)
    return where


@pytest.fixture(scope="session")
def simulated_log(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Record a closed-loop simulation (the gateway follows the analyzer's weights) once."""
    cache: dict[tuple[tuple[str, str], ...], Path] = {}

    def make(**options: Any) -> Path:
        key = tuple(sorted((k, str(v)) for k, v in options.items()))
        if key not in cache:
            work = fresh_demo(tmp_path_factory.mktemp("sim"))
            log = work / "access.jsonl"
            argv = [
                "simulate",
                "--rules",
                str(work / "rule.yaml"),
                "--start",
                START,
                "--record",
                str(log),
                "--linger",
                "20",
            ]
            for k, v in options.items():
                argv += [f"--{k.replace('_', '-')}", str(v)]
            assert main(argv) == 0
            cache[key] = log
        return cache[key]

    return make


def replay(rule: Path, events: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    code = main(["replay", "--rules", str(rule), "--events", str(events), "--json", *extra])
    out = capsys.readouterr().out
    doc = json.loads(out)
    doc["exit_code"] = code
    return doc


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    """A broker, Prometheus, the API emulator and a webhook receiver, for one test."""
    with open_world(tmp_path) as w:
        yield w
