"""Accepted events as numpy columns: what parsers produce and windows fold.

Strings are codes into the batch's ``Labels``, so selecting the rows of one model or one
adapter group is a numpy comparison, not a Python loop per row.

Must not: parse lines, or know rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from analyzer.events.access import AccessEvent

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.integer[Any]]
KeyArray = npt.NDArray[np.uint64]

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
KEY_BYTES = 64


def request_keys(ids: list[str | None]) -> KeyArray:
    """A 64-bit key per request id, the same in every process (0: no id): FNV-1a-style mixing
    of the id's first 64 bytes, eight at a time. Two ids collide with probability about
    2^-64 (ids that share their first 64 bytes always do: request ids are UUIDs, 36 bytes)."""
    raw = np.array([(i or "").encode() for i in ids], dtype=f"S{KEY_BYTES}")
    words = raw.view(np.uint64).reshape(len(ids), KEY_BYTES // 8)
    keys = np.full(len(ids), _FNV_OFFSET, dtype=np.uint64)
    for column in words.T:
        keys ^= column
        keys *= _FNV_PRIME
    keys[(raw == b"") | (raw == b"-")] = 0
    return keys


class Labels(dict[str | None, int]):
    """Codes for the strings of a batch (models, targets, partitions, finish reasons): each new
    string gets the next code, so a column of strings becomes an int array in one C-level map."""

    def __missing__(self, key: str | None) -> int:
        code = self[key] = len(self)
        return code

    def encode(self, values: list[str | None]) -> IntArray:
        return np.fromiter(map(self.__getitem__, values), dtype=np.int32, count=len(values))

    def names(self) -> list[str | None]:
        return list(self)

    def lookup(self, table: Callable[[str | None], Any], dtype: Any) -> npt.NDArray[Any]:
        """``table`` applied to every label, as an array to index with codes."""
        return np.array([table(name) for name in self], dtype=dtype)


@dataclass
class Columns:
    """Accepted events of a batch, one array per field, in input order.

    Strings are codes into ``labels`` (the batch's distinct names), so that selecting the rows
    of one model or one adapter group is a numpy comparison, not a Python loop per row.
    """

    index: IntArray
    """Position of each event's line in the batch."""
    timestamp: FloatArray
    labels: Labels
    model: IntArray
    target: IntArray
    is_error: npt.NDArray[np.bool_]
    ttft: FloatArray
    duration: FloatArray
    prompt_tokens: FloatArray
    completion_tokens: FloatArray
    partition: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    """Where each event was read (a label code), when the source is a partitioned log."""
    offset: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    request: KeyArray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    """Each event's request-id key (``request_keys``), when the log has request ids."""

    def __len__(self) -> int:
        return int(self.index.size)

    @property
    def identified(self) -> bool:
        return self.request.size == self.index.size

    @property
    def positioned(self) -> bool:
        return self.partition.size == self.index.size

    def locate(self, partition: str, offsets: IntArray) -> None:
        """Record that the events were read from ``partition`` at ``offsets`` (one per row)."""
        self.partition = np.full(len(self), self.labels[partition], dtype=np.int32)
        self.offset = offsets.astype(np.int64, copy=False)

    def code(self, name: str) -> int | None:
        return self.labels.get(name)

    def take(self, order: IntArray) -> Columns:
        positioned = self.positioned
        identified = self.identified
        return Columns(
            index=self.index[order],
            timestamp=self.timestamp[order],
            labels=self.labels,
            model=self.model[order],
            target=self.target[order],
            is_error=self.is_error[order],
            ttft=self.ttft[order],
            duration=self.duration[order],
            prompt_tokens=self.prompt_tokens[order],
            completion_tokens=self.completion_tokens[order],
            partition=self.partition[order] if positioned else self.partition,
            offset=self.offset[order] if positioned else self.offset,
            request=self.request[order] if identified else self.request,
        )

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        if len(parts) == 1:
            return parts[0]
        labels = Labels()
        recode = [labels.encode(p.labels.names()) for p in parts]
        positioned = all(p.positioned for p in parts)

        def codes(name: str) -> IntArray:
            return np.concatenate(
                [lut[getattr(p, name)] for p, lut in zip(parts, recode, strict=True)]
            )

        def cat(name: str) -> npt.NDArray[Any]:
            return np.concatenate([getattr(p, name) for p in parts])

        return Columns(
            index=cat("index"),
            timestamp=cat("timestamp"),
            labels=labels,
            model=codes("model"),
            target=codes("target"),
            is_error=cat("is_error"),
            ttft=cat("ttft"),
            duration=cat("duration"),
            prompt_tokens=cat("prompt_tokens"),
            completion_tokens=cat("completion_tokens"),
            partition=codes("partition") if positioned else np.empty(0, dtype=np.int32),
            offset=cat("offset") if positioned else np.empty(0, dtype=np.int64),
            request=(
                cat("request") if all(p.identified for p in parts) else np.empty(0, dtype=np.uint64)
            ),
        )

    @staticmethod
    def from_events(index: list[int], events: list[AccessEvent]) -> Columns:
        def col(name: str) -> FloatArray:
            return np.array([getattr(e, name) for e in events], dtype=np.float64)

        labels = Labels()
        return Columns(
            index=np.array(index, dtype=np.int64),
            timestamp=np.array([e.timestamp for e in events], dtype=np.float64),
            labels=labels,
            model=labels.encode([e.model for e in events]),
            target=labels.encode([e.target for e in events]),
            is_error=np.array([e.is_error for e in events], dtype=bool),
            ttft=col("ttft"),
            duration=col("duration"),
            prompt_tokens=col("prompt_tokens"),
            completion_tokens=col("completion_tokens"),
            request=request_keys([e.request_id for e in events]),
        )

    @staticmethod
    def empty() -> Columns:
        return Columns.from_events([], [])

    @staticmethod
    def in_line_order(parts: list[Columns]) -> Columns:
        """The parts' rows together, in line order (``index``): batches of the same lines
        parsed by different paths or field maps."""
        if not parts:
            return Columns.empty()
        if len(parts) == 1:
            return parts[0]
        both = Columns.concat(parts)
        return both.take(np.argsort(both.index, kind="stable"))
