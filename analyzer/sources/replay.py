"""Lines from a JSONL file (plain or .gz) or stdin, as bytes, in batches.

Must not: parse lines (the engine's parser does, so every source counts rejects the same way).
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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
