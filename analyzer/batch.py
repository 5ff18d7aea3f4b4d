"""Columnar parsing: a batch of log lines into numpy columns, for high-rate sources (Kafka).

The per-line parser (events.py) builds one AccessEvent per line; at tens of thousands of lines
per second that Python work dominates. Here msgspec decodes each line into a struct holding only
the mapped fields (unknown keys are skipped in C, numeric strings are coerced; the structs are
not tracked by the garbage collector), fields come out one C-level map each, strings become
integer codes (``Labels``), and the range checks run on numpy columns. Any line the fast path
cannot take as is (malformed, a type msgspec refuses, a value out of range) goes through the
per-line parser, which accepts it or counts it under its exact reason, so both paths accept and
reject the same lines for the same reasons. One difference, on purpose: a line that is not
valid JSON only in a field the mapping does not read (invalid UTF-8, a number too large for a
float) is read here, while the per-line parser rejects it as ``not_json``.

When most lines of the previous batch were for models nobody watches, each line's model is
decoded first and only the watched lines in full: lines of other models then cost about half.

Only flat field maps (no dotted paths) take the fast path; others use the per-line parser for
every line, with the same result, more slowly.

Must not: do I/O, or decide anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from analyzer.events import UNSET, AccessEvent, EventParser

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.integer[Any]]
CHUNK = 1024
MODEL_FIRST_BELOW = 0.5
"""Below this share of watched lines in the last batch, the model is read before the rest."""
_MODEL = attrgetter("f_model")
_EPOCH_DIVISOR = {"epoch_s": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
_UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


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

    def __len__(self) -> int:
        return int(self.index.size)

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
        )


class BatchParser:
    """Columns for a batch of lines, with exactly the per-line parser's verdicts and counts."""

    def __init__(self, parser: EventParser) -> None:
        self.parser = parser
        fields = parser.spec.resolved_fields()
        self.fast = all("." not in fs.path for fs in fields.values())
        self._names = list(fields)
        ts_format = fields["timestamp"].format or "auto"
        types: dict[str, Any] = {
            "timestamp": {"rfc3339": datetime, "auto": datetime | float}.get(ts_format, float),
            "model": str,
            "target": str,
            "status": int | None,
            "ttft": float | None,
            "duration": float | None,
            "prompt_tokens": float | None,
            "completion_tokens": float | None,
            "finish_reason": str | None,
            "request_id": str | None,
        }
        required = ("timestamp", "model", "target")
        spec = [
            (f"f_{name}", types[name]) if name in required else (f"f_{name}", types[name], None)
            for name in self._names
        ]
        spec.sort(key=lambda s: len(s) == 3)  # required fields first
        # gc=False: the structs hold only strings and numbers, and a fetch of them must not
        # trigger cyclic garbage collections (which walk every live object).
        self._struct = msgspec.defstruct(
            "Line", spec, rename={f"f_{n}": fields[n].path for n in self._names}, gc=False
        )
        self._decoder = msgspec.json.Decoder(self._struct, strict=False)
        model_only = msgspec.defstruct(
            "Model", [("f_model", str)], rename={"f_model": fields["model"].path}, gc=False
        )
        self._model_decoder = msgspec.json.Decoder(model_only, strict=False)
        self._watched_share = 1.0
        """Share of the last batch's lines that were for watched models."""
        self._ts_format = ts_format
        self._units = {
            n: _UNIT_DIVISOR[fields[n].unit or "s"] for n in ("ttft", "duration") if n in fields
        }

    def parse(self, lines: list[bytes]) -> Columns:
        """Accepted events as columns; ``self.rejected`` lists (line index, reason)."""
        self.rejected: list[tuple[int, str]] = []
        if not self.fast:
            return self._slow(lines, range(len(lines)))
        if self.parser.models is None or self._watched_share >= MODEL_FIRST_BELOW or not lines:
            before = self.parser.stats.ignored
            cols = self._decode(lines)
            ignored = self.parser.stats.ignored - before
            self._watched_share = 1.0 - ignored / len(lines) if lines else 1.0
            return cols
        # Most lines are for models nobody watches: read only their model first (about half
        # the cost of a full decode), and decode in full only the lines that are kept.
        kept = self._watched_lines(lines)
        self._watched_share = kept.size / len(lines)
        cols = self._decode([lines[i] for i in kept])
        cols.index = kept[cols.index]
        self.rejected = [(int(kept[i]), reason) for i, reason in self.rejected]
        return cols

    def _watched_lines(self, lines: list[bytes]) -> IntArray:
        """Positions of the lines that need a full decode: a watched model, or any doubt
        (too long, not decodable, an empty model): the full path gives those their verdict.
        The others are counted as ignored, as the per-line parser would (it reads the model
        before anything else but the line's length and JSON shape)."""
        models = self.parser.models
        assert models is not None
        rows, unsure = self._decode_all(lines, self._model_decoder.decode)
        labels = Labels()
        codes = labels.encode(list(map(_MODEL, rows)))
        wanted = labels.lookup(lambda name: not name or name == UNSET or name in models, bool)
        wanted = wanted[codes]
        self.parser.stats.ignored += int(wanted.size - np.count_nonzero(wanted))
        keep = np.zeros(len(lines), dtype=bool)
        keep[_decoded_at(len(lines), unsure)[wanted]] = True
        keep[unsure] = True
        return np.flatnonzero(keep)

    def _decode(self, lines: list[bytes]) -> Columns:
        rows, slow = self._decode_all(lines, self._decoder.decode)
        fast = self._columns(rows, _decoded_at(len(lines), slow), slow)
        if slow:
            return _merge(fast, self._slow(lines, sorted(slow)))
        return fast

    def _decode_all(
        self, lines: list[bytes], decode: Callable[[bytes], Any]
    ) -> tuple[list[Any], list[int]]:
        """The decoded lines, in order, and the positions of those that were not decoded
        (too long, or refused by msgspec: the per-line parser gives them their verdict)."""
        rows: list[Any] = []
        failed: list[int] = []
        limit = self.parser.spec.max_line_bytes
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start : start + CHUNK]
            try:
                # One C-level map per chunk; a chunk with a line msgspec refuses (or an
                # oversized one) is decoded line by line, so one bad line costs one chunk.
                if max(map(len, chunk)) > limit:
                    raise ValueError
                decoded = list(map(decode, chunk))
                rows += decoded
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
                for i, line in enumerate(chunk, start):
                    if len(line) > limit:
                        failed.append(i)
                        continue
                    try:
                        rows.append(decode(line))
                    except (msgspec.ValidationError, msgspec.DecodeError):
                        failed.append(i)
        return rows, failed

    def _slow(self, lines: list[bytes], which: Iterable[int]) -> Columns:
        index: list[int] = []
        events: list[AccessEvent] = []
        stats = self.parser.stats
        for i in which:
            before = stats.rejected
            event = self.parser.parse_line(lines[i])
            if event is not None:
                index.append(i)
                events.append(event)
            elif stats.rejected > before and self.parser.last_rejection is not None:
                self.rejected.append((i, self.parser.last_rejection))
        return Columns.from_events(index, events)

    def _column(self, rows: list[Any], name: str) -> FloatArray:
        """A numeric field as floats: None (not logged) is NaN; a logged NaN or infinity
        becomes -1, which fails the range check and sends the line to the per-line parser
        (it rejects it as non_finite)."""
        if name not in self._names:
            return np.full(len(rows), math.nan)
        values = list(map(attrgetter(f"f_{name}"), rows))
        column = np.array(values, dtype=np.float64)
        nan = np.isnan(column)
        if nan.any() and int(nan.sum()) != values.count(None):  # a logged NaN among them
            logged = np.array([v is not None for v in values], dtype=bool)
            column[nan & logged] = -1.0
        column[np.isinf(column)] = -1.0
        return column

    def _timestamps(self, raw: list[Any]) -> FloatArray:
        if self._ts_format not in ("rfc3339", "auto"):
            return np.array(raw, dtype=np.float64) / _EPOCH_DIVISOR[self._ts_format]
        if set(map(type, raw)) <= {datetime}:
            return np.fromiter(map(datetime.timestamp, raw), dtype=np.float64, count=len(raw))
        # Epoch numbers under "auto": left to the per-line parser (NaN fails the range check).
        return np.array(
            [v.timestamp() if isinstance(v, datetime) else math.nan for v in raw],
            dtype=np.float64,
        )

    def _columns(self, rows: list[Any], where: IntArray, slow: list[int]) -> Columns:
        """Columns of the decoded ``rows`` (from lines ``where``); lines the range checks are
        unsure of are added to ``slow``."""
        names = self._names
        labels = Labels()
        model = labels.encode(list(map(attrgetter("f_model"), rows)))
        models = self.parser.models
        if models is not None:
            # Lines of models nobody watches are only counted; an empty model is malformed
            # (the per-line parser rejects it before looking at the model).
            kind = labels.lookup(
                lambda name: 2 if not name or name == UNSET else int(name in models), np.int8
            )
            kinds = kind[model]
            self.parser.stats.ignored += int(np.count_nonzero(kinds == 0))
            slow.extend(where[kinds == 2].tolist())
            if not (kinds == 1).all():
                keep = np.flatnonzero(kinds == 1)
                rows = [rows[i] for i in keep]
                where = where[keep]
                model = model[keep]
        n = len(rows)
        target = labels.encode(list(map(attrgetter("f_target"), rows)))
        ts = self._timestamps(list(map(attrgetter("f_timestamp"), rows)))
        status = self._column(rows, "status")
        ttft = self._column(rows, "ttft") / self._units.get("ttft", 1.0)
        duration = self._column(rows, "duration") / self._units.get("duration", 1.0)
        prompt = self._column(rows, "prompt_tokens")
        completion = self._column(rows, "completion_tokens")
        finish = (
            labels.encode(list(map(attrgetter("f_finish_reason"), rows)))
            if "finish_reason" in names
            else labels.encode([None] * n)
        )
        with np.errstate(invalid="ignore"):
            ok = (ts >= 1e9) & (ts <= 1e10)
            for arr in (ttft, duration, prompt, completion):
                ok &= np.isnan(arr) | (arr >= 0)
            for arr in (prompt, completion):
                ok &= np.isnan(arr) | (arr == np.floor(arr))
            ok &= np.isnan(status) | ((status >= 0) & (status <= 999))
        named = labels.lookup(lambda name: bool(name) and name != UNSET, bool)
        ok &= named[model] & named[target]  # else the per-line parser says missing_field
        if not ok.all():  # the per-line parser says why (or accepts what we were unsure of)
            slow.extend(where[~ok].tolist())
        keep = np.flatnonzero(ok)
        self.parser.stats.accepted += int(keep.size)
        is_error = self._errors(status, labels, finish)
        return Columns(
            index=where[keep],
            timestamp=ts[keep],
            labels=labels,
            model=model[keep],
            target=target[keep],
            is_error=is_error[keep],
            ttft=ttft[keep],
            duration=duration[keep],
            prompt_tokens=prompt[keep],
            completion_tokens=completion[keep],
        )

    def _errors(
        self, status: FloatArray, labels: Labels, finish: IntArray
    ) -> npt.NDArray[np.bool_]:
        spec = self.parser.spec
        exact = [s for s in spec.error_statuses if isinstance(s, int)]
        classes = [int(s[0]) for s in spec.error_statuses if isinstance(s, str)]
        with np.errstate(invalid="ignore"):
            err = np.isin(status, exact) | np.isin(np.floor(status / 100), classes)
        reasons = frozenset(spec.error_finish_reasons)
        if reasons:
            err |= labels.lookup(lambda name: name in reasons, bool)[finish]
        return err


def _decoded_at(n: int, failed: list[int]) -> IntArray:
    """Positions 0..n-1 but ``failed``: where each decoded row came from."""
    decoded = np.ones(n, dtype=bool)
    decoded[failed] = False
    return np.flatnonzero(decoded)


def _merge(fast: Columns, slow: Columns) -> Columns:
    both = Columns.concat([fast, slow])
    return both.take(np.argsort(both.index, kind="stable"))
