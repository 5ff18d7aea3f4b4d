"""Event-time poison and gaps, replayed through the engine the daemon runs."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from analyzer.config import load_rules
from analyzer.events.access import ParseStats
from analyzer.notify.base import NoopNotifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.conftest import fresh_demo


def _at(line: bytes) -> float:
    stamp = orjson.loads(line)["start_time"]
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _dated(line: bytes, t: float) -> bytes:
    record = orjson.loads(line)
    stamp = dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({**record, "start_time": stamp}) + b"\n"


async def _replay(work: Path, lines: list[bytes]) -> tuple[list[Any], list[Any], ParseStats]:
    loaded = load_rules([work / "rule.yaml"])[0][0]
    controller = RolloutController(loaded, make_router(loaded), NoopNotifier())
    engine = Engine([controller])
    judgments: list[Any] = []
    controller.on_judgment = lambda c, now, verdict: judgments.append(
        (now, [(r.name, r.status, r.p_value, r.n_baseline, r.n_canary) for r in verdict.checks])
    )
    for start in range(0, len(lines), 4096):
        await engine.feed_lines(lines[start : start + 4096])
    await engine.finish()
    decisions = [(d.at, d.action, d.canary_percent) for d in controller.decisions]
    return decisions, judgments, engine.stats


def test_poison_timestamps_are_rejected_and_change_no_decision(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """One line dated 2200 mid-log and an old first line (2005): before, the first froze the
    rollout judging every interval towards 2200 and the second started it 21 years early."""
    lines = simulated_log().read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    poisoned = [
        _dated(lines[0], dt.datetime(2005, 1, 1, tzinfo=dt.UTC).timestamp()),
        *lines[:middle],
        _dated(lines[middle], dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp()),
        *lines[middle:],
    ]
    clean = asyncio.run(_replay(fresh_demo(tmp_path / "clean"), lines))
    dirty = asyncio.run(_replay(fresh_demo(tmp_path / "dirty"), poisoned))
    assert dirty[:2] == clean[:2]  # the same judgments and decisions, at the same times
    assert clean[0][-1][1] == "promote"
    assert dirty[2].accepted == clean[2].accepted
    assert dirty[2].rejected_by_reason == {"future_timestamp": 1, "stale_timestamp": 1}


def test_a_gap_in_event_time_is_one_judgment_not_one_per_interval(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """Three hours without traffic mid-rollout, at a 10 s interval: 1,080 judgments before
    (every one on the same evidence), one now."""
    lines = simulated_log().read_bytes().splitlines(keepends=True)
    middle = len(lines) // 4
    gap = 3 * 3600.0
    gapped = lines[:middle] + [_dated(line, _at(line) + gap) for line in lines[middle:]]
    decisions, judgments, stats = asyncio.run(_replay(fresh_demo(tmp_path), gapped))
    quiet_from, quiet_to = _at(lines[middle - 1]), _at(lines[middle]) + gap
    inside = [t for t, _ in judgments if quiet_from < t < quiet_to]
    assert len(inside) == 1, len(inside)
    assert stats.rejected == 0  # the rows after the gap vouch for each other
    assert judgments[-1][0] > quiet_to and decisions  # judging goes on after it
