"""Event-time order across partitions: parsed rows wait here until every active partition
has reached their time (a low watermark), then leave in time order.

A partition that sent nothing for ``idle_seconds`` stops holding the others back; past
``max_buffered`` rows everything is released (memory is bounded; order may then be only
nearly kept, and the engine folds late rows at the time already reached).

Must not: know Kafka, parse, or decide anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from analyzer.events.columns import Columns


class EventTimeBuffer:
    def __init__(self, idle_seconds: float, max_buffered: int) -> None:
        self.idle_seconds = idle_seconds
        self.max_buffered = max_buffered
        self._chunks: list[Columns] = []
        self._latest: dict[str, float] = {}
        """Per partition, the newest event time it delivered."""
        self._last_seen: dict[str, float] = {}
        """Per partition, when (wall clock) it last delivered anything."""

    def __len__(self) -> int:
        return sum(map(len, self._chunks))

    def expect(self, partitions: Iterable[str], now: float) -> None:
        """Partitions assigned to this reader: one that has delivered nothing yet holds the
        watermark back (a backlog's first fetch may come from one partition only) until it
        delivers or stays silent for ``idle_seconds`` from now."""
        for partition in partitions:
            if partition not in self._latest:
                self._latest[partition] = float("-inf")
                self._last_seen[partition] = now

    def add(self, partition: str, cols: Columns, now: float, *, delivered: bool) -> None:
        """One partition's share of a fetch (``delivered``: it had records, even if none
        parsed); ``now`` is the wall clock of the fetch."""
        if delivered:
            self._last_seen[partition] = now
        if len(cols):
            self._chunks.append(cols)
            latest = float(cols.timestamp.max())
            if latest > self._latest.get(partition, float("-inf")):
                self._latest[partition] = latest

    def watermark(self, now: float) -> float:
        """Rows at or before this time may leave: the slowest active partition's newest time
        (infinity when no partition is active or the buffer is full)."""
        active = [
            ts
            for key, ts in self._latest.items()
            if now - self._last_seen.get(key, now) < self.idle_seconds
        ]
        if len(self) > self.max_buffered or not active:
            return float("inf")
        return min(active)

    def release(self, limit: float) -> Columns | None:
        """The buffered rows at or before ``limit``, in event-time order (None if none)."""
        if not self._chunks or limit == float("-inf"):
            return None
        cols = Columns.concat(self._chunks)
        order = np.argsort(cols.timestamp, kind="stable")
        cut = int(np.searchsorted(cols.timestamp[order], limit, side="right"))
        now_rows, later = order[:cut], order[cut:]
        self._chunks = [cols.take(later)] if later.size else []
        return cols.take(now_rows) if now_rows.size else None
