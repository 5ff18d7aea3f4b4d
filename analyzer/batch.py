"""Columnar parsing: a batch of log lines into numpy columns, for high-rate sources (Kafka).

The per-line parser (events.py) builds one AccessEvent per line; at tens of thousands of lines
per second that Python work dominates. Here msgspec decodes each line into a struct holding only
the mapped fields (unknown keys are skipped in C, numeric strings are coerced), and the range
checks run on numpy columns. Any line the fast path cannot take as is (malformed, a type msgspec
refuses, a value out of range) goes through the per-line parser, which accepts it or counts it
under its exact reason, so both paths accept and reject the same lines for the same reasons.

Only flat field maps (no dotted paths) take the fast path; others use the per-line parser for
every line, with the same result, more slowly.

Must not: do I/O, or decide anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from analyzer.events import AccessEvent, EventParser

FloatArray = npt.NDArray[np.float64]
_EPOCH_DIVISOR = {"epoch_s": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
_UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_NUMERIC = ("status", "ttft", "duration", "prompt_tokens", "completion_tokens")


@dataclass
class Columns:
    """Accepted events of a batch, one array (or list) per field, in input order."""

    index: npt.NDArray[np.int64]
    """Position of each event's line in the batch."""
    timestamp: FloatArray
    model: list[str]
    target: list[str]
    is_error: npt.NDArray[np.bool_]
    ttft: FloatArray
    duration: FloatArray
    prompt_tokens: FloatArray
    completion_tokens: FloatArray

    def __len__(self) -> int:
        return int(self.index.size)

    def take(self, order: npt.NDArray[np.int64]) -> Columns:
        return Columns(
            index=self.index[order],
            timestamp=self.timestamp[order],
            model=[self.model[i] for i in order],
            target=[self.target[i] for i in order],
            is_error=self.is_error[order],
            ttft=self.ttft[order],
            duration=self.duration[order],
            prompt_tokens=self.prompt_tokens[order],
            completion_tokens=self.completion_tokens[order],
        )

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        return Columns(
            index=np.concatenate([p.index for p in parts]),
            timestamp=np.concatenate([p.timestamp for p in parts]),
            model=[m for p in parts for m in p.model],
            target=[t for p in parts for t in p.target],
            is_error=np.concatenate([p.is_error for p in parts]),
            ttft=np.concatenate([p.ttft for p in parts]),
            duration=np.concatenate([p.duration for p in parts]),
            prompt_tokens=np.concatenate([p.prompt_tokens for p in parts]),
            completion_tokens=np.concatenate([p.completion_tokens for p in parts]),
        )

    @staticmethod
    def from_events(index: list[int], events: list[AccessEvent]) -> Columns:
        def col(name: str) -> FloatArray:
            return np.array(
                [math.nan if getattr(e, name) is None else getattr(e, name) for e in events],
                dtype=np.float64,
            )

        return Columns(
            index=np.array(index, dtype=np.int64),
            timestamp=np.array([e.timestamp for e in events], dtype=np.float64),
            model=[e.model for e in events],
            target=[e.target for e in events],
            is_error=np.array([e.is_error for e in events], dtype=bool),
            ttft=col("ttft"),
            duration=col("duration"),
            prompt_tokens=col("prompt_tokens"),
            completion_tokens=col("completion_tokens"),
        )

    def slice(self, start: int, stop: int) -> Columns:
        return self.take(np.arange(start, stop, dtype=np.int64))


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
        self._struct = msgspec.defstruct(
            "Line", spec, rename={f"f_{n}": fields[n].path for n in self._names}
        )
        self._decoder = msgspec.json.Decoder(self._struct, strict=False)
        self._ts_format = ts_format
        self._units = {
            n: _UNIT_DIVISOR[fields[n].unit or "s"] for n in ("ttft", "duration") if n in fields
        }

    def parse(self, lines: list[bytes]) -> Columns:
        """Accepted events as columns; ``self.rejected`` lists (line index, reason)."""
        self.rejected: list[tuple[int, str]] = []
        if not self.fast:
            return self._slow(lines, range(len(lines)))
        p = self.parser
        decoded: list[Any] = []
        where: list[int] = []
        slow: list[int] = []
        limit = p.spec.max_line_bytes
        models = p.models
        ignored = 0
        decode = self._decoder.decode
        for i, line in enumerate(lines):
            if len(line) > limit:
                slow.append(i)
                continue
            try:
                row: Any = decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError):
                slow.append(i)
                continue
            if models is not None and row.f_model not in models:
                ignored += 1
                continue
            decoded.append(row)
            where.append(i)
        p.stats.ignored += ignored
        fast = self._columns(decoded, where, slow)
        if slow:
            return _merge(fast, self._slow(lines, slow))
        return fast

    def _slow(self, lines: list[bytes], which: Any) -> Columns:
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

    def _columns(self, rows: list[Any], where: list[int], slow: list[int]) -> Columns:
        n = len(rows)
        names = self._names

        def col(name: str) -> FloatArray:
            if name not in names:
                return np.full(n, math.nan)
            attr = f"f_{name}"
            # None is "not logged" (NaN); a logged NaN or infinity becomes -1 so the range
            # check sends the line to the per-line parser, which rejects it as non_finite.
            return np.array(
                [
                    math.nan
                    if (v := getattr(r, attr)) is None
                    else (v if math.isfinite(v) else -1.0)
                    for r in rows
                ],
                dtype=np.float64,
            )

        ts_raw = [r.f_timestamp for r in rows]
        if self._ts_format in ("rfc3339", "auto"):
            ts = np.array(
                [v.timestamp() if isinstance(v, datetime) else math.nan for v in ts_raw],
                dtype=np.float64,
            )
            numeric = np.array([not isinstance(v, datetime) for v in ts_raw], dtype=bool)
            if numeric.any():  # epoch numbers under "auto": leave them to the per-line parser
                ts[numeric] = math.nan
        else:
            ts = np.array(ts_raw, dtype=np.float64) / _EPOCH_DIVISOR[self._ts_format]
        model = [r.f_model for r in rows]
        target = [r.f_target for r in rows]
        status = col("status")
        ttft = col("ttft") / self._units.get("ttft", 1.0)
        duration = col("duration") / self._units.get("duration", 1.0)
        prompt = col("prompt_tokens")
        completion = col("completion_tokens")
        finish = [r.f_finish_reason for r in rows] if "finish_reason" in names else [None] * n
        ok = (ts >= 1e9) & (ts <= 1e10)
        for arr in (ttft, duration, prompt, completion):
            ok &= np.isnan(arr) | (np.isfinite(arr) & (arr >= 0))
        for arr in (prompt, completion):
            ok &= np.isnan(arr) | (arr == np.floor(arr))
        ok &= np.isnan(status) | ((status >= 0) & (status <= 999))
        ok &= np.array(
            [bool(m) and bool(t) for m, t in zip(model, target, strict=True)], dtype=bool
        )
        if not ok.all():  # the per-line parser says why (or accepts what we were unsure of)
            slow.extend(where[i] for i in np.flatnonzero(~ok))
        keep = np.flatnonzero(ok)
        self.parser.stats.accepted += int(keep.size)
        is_error = self._errors(status, finish)
        return Columns(
            index=np.array(where, dtype=np.int64)[keep],
            timestamp=ts[keep],
            model=[model[i] for i in keep],
            target=[target[i] for i in keep],
            is_error=is_error[keep],
            ttft=ttft[keep],
            duration=duration[keep],
            prompt_tokens=prompt[keep],
            completion_tokens=completion[keep],
        )

    def _errors(self, status: FloatArray, finish: list[str | None]) -> npt.NDArray[np.bool_]:
        spec = self.parser.spec
        exact = [s for s in spec.error_statuses if isinstance(s, int)]
        classes = [int(s[0]) for s in spec.error_statuses if isinstance(s, str)]
        with np.errstate(invalid="ignore"):
            err = np.isin(status, exact) | np.isin(np.floor(status / 100), classes)
        reasons = frozenset(spec.error_finish_reasons)
        if reasons:
            err |= np.array([f in reasons for f in finish], dtype=bool)
        return err


def _merge(fast: Columns, slow: Columns) -> Columns:
    both = Columns.concat([fast, slow])
    return both.take(np.argsort(both.index, kind="stable"))
