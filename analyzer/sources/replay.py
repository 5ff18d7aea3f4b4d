"""Lines from a JSONL file (plain or .gz) or stdin, as bytes, in batches.

A file is read in batches of ``batch_size`` lines. A pipe (stdin, a FIFO) is live: a batch also
ends ``max_wait`` seconds after its first line, so a slow writer's lines are judged within a
second instead of waiting for thousands more (a reader thread blocks on the pipe, the event loop
never does).

Must not: parse lines (the engine's parser does, so every source counts rejects the same way).
"""

from __future__ import annotations

import asyncio
import gzip
import queue
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

MAX_WAIT = 1.0
"""Seconds a live batch waits for more lines after its first."""


def open_lines(path: str | Path) -> BinaryIO:
    if str(path) == "-":
        return sys.stdin.buffer
    p = Path(path)
    with p.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(p, "rb")  # type: ignore[return-value]
    return p.open("rb")


def iter_batches(path: str | Path, batch_size: int = 4096) -> Iterator[list[bytes]]:
    """Lines in batches; a line is never split, however long (the parser counts it too_long)."""
    fh = open_lines(path)
    try:
        batch: list[bytes] = []
        for line in fh:
            batch.append(line)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def is_live(path: str | Path) -> bool:
    """stdin or a FIFO: lines arrive while it is read."""
    if str(path) == "-":
        return True
    try:
        return stat.S_ISFIFO(Path(path).stat().st_mode)
    except OSError:
        return False


async def stream_batches(
    path: str | Path, batch_size: int = 4096, max_wait: float = MAX_WAIT
) -> AsyncIterator[list[bytes]]:
    """``iter_batches``, but a live input's batch also ends ``max_wait`` s after its first line."""
    if not is_live(path):
        for batch in iter_batches(path, batch_size):
            yield batch
        return
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=16 * batch_size)

    def read() -> None:
        fh = open_lines(path)
        try:
            for line in fh:
                lines.put(line)
        finally:
            lines.put(None)  # end of input
            if fh is not sys.stdin.buffer:
                fh.close()

    threading.Thread(target=read, name="live-lines", daemon=True).start()
    done = False
    while not done:
        first = await asyncio.to_thread(lines.get)
        if first is None:
            return
        batch = [first]
        deadline = time.monotonic() + max_wait
        while len(batch) < batch_size:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    line = await asyncio.to_thread(lines.get, True, left)
                except queue.Empty:
                    break
            if line is None:
                done = True
                break
            batch.append(line)
        yield batch
