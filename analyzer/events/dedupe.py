"""Duplicate requests: a record delivered twice by the log pipeline (Fluent Bit, Vector and
the Kafka producers retry: at-least-once) would count twice, and narrow every interval with
evidence that is not there.

A row whose request id was already seen within ``window`` seconds of event time, at another
position, is a duplicate. The same record read again (a rewind on takeover: same partition and
offset) is not: the windows skip those by offset. Memory is bounded by the ids of the last
``window`` seconds.

Must not: read a clock (the rows' times are the clock), or parse lines.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from analyzer.events.columns import Columns

DUPLICATE = "duplicate_request"
DEFAULT_WINDOW = 300.0


Position = tuple[str | None, int] | None
"""Where a row was read (partition, offset); None for a file's line."""


class RequestDedupe:
    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self._seen: dict[int, Position] = {}
        self._batches: deque[tuple[float, list[int]]] = deque()

    def duplicates(self, cols: Columns) -> npt.NDArray[np.bool_]:
        """Which rows repeat a request seen before, or earlier in ``cols``, at another
        position (the same record read again is not a duplicate)."""
        n = len(cols)
        dup = np.zeros(n, dtype=bool)
        if n == 0 or not cols.identified:
            return dup
        rows = np.flatnonzero(cols.request != 0)
        if rows.size == 0:
            return dup
        unique, first = np.unique(cols.request[rows], return_index=True)
        repeated = np.ones(rows.size, dtype=bool)
        repeated[first] = False  # the first of each key in the batch is not a repeat of it
        at = self._positions(cols, rows[first])
        seen, new = self._seen, []
        for i, (key, where) in enumerate(zip(unique.tolist(), at, strict=True)):
            if key not in seen:
                seen[key] = where
                new.append(key)
            elif seen[key] is None or seen[key] != where:
                repeated[first[i]] = True
        dup[rows[repeated]] = True
        now = float(cols.timestamp.max())
        self._batches.append((now, new))
        while self._batches and self._batches[0][0] < now - self.window:
            for key in self._batches.popleft()[1]:
                seen.pop(key, None)
        return dup

    @staticmethod
    def _positions(cols: Columns, rows: npt.NDArray[np.intp]) -> list[Position]:
        if not cols.positioned:
            return [None] * rows.size
        names = cols.labels.names()
        return [
            (names[p], o)
            for p, o in zip(cols.partition[rows].tolist(), cols.offset[rows].tolist(), strict=True)
        ]
