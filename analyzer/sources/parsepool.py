"""A parsing process for the Kafka source: a fetch's lines become columns on another core while
the consumer reads the next fetch.

The consumer is CPU-bound in its own process (the Kafka client builds an object per record, and
collecting them is a third of its time); parsing a line costs about half as much again. With a
second core, parsing there overlaps with consuming instead of adding to it. The lines travel as
one buffer and their end offsets (no per-line pickling); the columns come back as numpy arrays.
A lost worker costs nothing but speed: the batch is parsed in this process and a new worker is
started for the next one. A worker whose daemon died (SIGKILL leaves it no time to stop the
pool) notices within a second that it was orphaned, and exits.

Must not: decide anything, or hold state other than one parser per rule set.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from analyzer.events.access import ParseStats
from analyzer.events.columns import Columns
from analyzer.events.ruleset import ParserKey, RuleSetParser

log = structlog.get_logger("analyzer.parsepool")

ParseResult = tuple[Columns, list[tuple[int, str]], ParseStats]
"""Columns, (line, reason) of each rejected line, and the counts of this batch."""
RuleSetKey = tuple[ParserKey, ...]

MAX_PARSERS = 8
_parsers: dict[RuleSetKey, RuleSetParser] = {}
"""In the worker: one parser per rule set, kept between batches (it learns the watched share)."""


def parse_job(key: RuleSetKey, buffer: bytes, ends: npt.NDArray[np.int64]) -> ParseResult:
    """Runs in the worker: the lines of ``buffer`` (ending at ``ends``) as columns."""
    parser = _parsers.get(key)
    if parser is None:
        parser = _parsers[key] = RuleSetParser.from_keys(key)
        while len(_parsers) > MAX_PARSERS:  # rule reloads: keep the recent rule sets only
            del _parsers[next(iter(_parsers))]
    lines = [buffer[a:b] for a, b in pairwise([0, *ends.tolist()])]
    parser.reset_stats()
    cols = parser.parse(lines)
    return cols, parser.rejected, parser.stats


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Worker initializer: exit once ``parent`` is no longer this process's parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)  # orphaned: nobody will collect our results

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 quota (the container's
    CPU limit, which the affinity does not show)."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        with cpu_max.open(encoding="ascii") as fh:
            quota, period = fh.read().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cpus


class ParsePool:
    """One worker process (started by ``start``, else at the first batch); batches are parsed
    in order."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self.lost = 0
        """Workers lost (killed, crashed); each time, that batch was parsed here."""

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: the daemon has threads (the event loop's executor), which fork would copy
            # mid-flight.
            self._executor = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def start(self, parser: RuleSetParser) -> None:
        """Start the worker now (imports and the parser take about a second), not at the
        first fetch."""
        await self.parse(parser, [])

    async def parse(self, parser: RuleSetParser, values: list[bytes]) -> ParseResult:
        key = parser.keys
        ends = np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)))
        loop = asyncio.get_running_loop()
        executor = self._pool()
        try:
            return await loop.run_in_executor(executor, parse_job, key, b"".join(values), ends)
        except BrokenProcessPool:
            self.lost += 1
            log.warning("parse_worker_lost", lost=self.lost, lines=len(values))
            if self._executor is executor:  # not a newer one, started since for other batches
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
        except Exception as exc:  # any other failure there: parse here instead
            log.error("parse_worker_failed", error=type(exc).__name__, lines=len(values))
        cols = parser.parse(values)  # counted in the parser's stats already
        return cols, parser.rejected, ParseStats()

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)
