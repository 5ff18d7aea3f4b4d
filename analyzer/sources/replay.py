"""Lines from a JSONL file (plain or .gz) or stdin, as bytes, in batches.

A file is read in batches of ``batch_size`` lines. A pipe (stdin, a FIFO) is live: a batch also
ends ``max_wait`` seconds after its first line, so a slow writer's lines are judged within a
second instead of waiting for thousands more (a reader thread blocks on the pipe, the event loop
never does). A followed file (``follow``, tail -F) is live too: read from its start, then as it
grows; when it is rotated (another file at its path) or truncated, the new one from its start.

Must not: parse lines (the engine's parser does, so every source counts rejects the same way).
"""

from __future__ import annotations

import asyncio
import gzip
import os
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
FOLLOW_POLL = 0.2
"""Seconds between looks at a followed file that has no new line."""


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


def follow_lines(path: Path, stop: threading.Event, poll: float = FOLLOW_POLL) -> Iterator[bytes]:
    """The whole lines of a growing file until ``stop``; a partial last line waits for its
    end. Rotation (another file at ``path``) and truncation restart from the new start."""
    fh = path.open("rb")
    inode, partial = os.fstat(fh.fileno()).st_ino, b""
    try:
        while not stop.is_set():
            chunk = fh.readline()
            if chunk:
                partial += chunk
                if partial.endswith(b"\n"):
                    yield partial
                    partial = b""
                continue
            try:
                now = path.stat()
            except FileNotFoundError:  # between a rename and the new file
                stop.wait(poll)
                continue
            if now.st_ino != inode or now.st_size < fh.tell():
                if partial:
                    yield partial  # the old file's last line, unterminated: its verdict
                fh.close()
                fh = path.open("rb")
                inode, partial = os.fstat(fh.fileno()).st_ino, b""
                continue
            stop.wait(poll)
    finally:
        fh.close()


async def stream_batches(
    path: str | Path,
    batch_size: int = 4096,
    max_wait: float = MAX_WAIT,
    follow: bool = False,
) -> AsyncIterator[list[bytes]]:
    """``iter_batches``, but a live input's batch also ends ``max_wait`` s after its first
    line; with ``follow``, a file is read as it grows, until the caller stops."""
    if not (follow or is_live(path)):
        for batch in iter_batches(path, batch_size):
            yield batch
        return
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=16 * batch_size)
    stop = threading.Event()

    def read() -> None:
        if follow:
            for line in follow_lines(Path(path), stop):
                while not stop.is_set():  # a full queue must not keep a stopped reader
                    try:
                        lines.put(line, timeout=FOLLOW_POLL)
                        break
                    except queue.Full:
                        continue
            return
        fh = open_lines(path)
        try:
            for line in fh:
                lines.put(line)
        finally:
            lines.put(None)  # end of input
            if fh is not sys.stdin.buffer:
                fh.close()

    threading.Thread(target=read, name="live-lines", daemon=True).start()
    try:
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
    finally:
        stop.set()  # the caller stopped early (every rollout finished): so does the reader
