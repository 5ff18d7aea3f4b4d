"""The batch parser: a batch of log lines into numpy columns at once.

The per-line parser (lineparser.py) builds one AccessEvent per line; at tens of thousands of lines
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
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from analyzer.events.columns import Columns, FloatArray, IntArray, Labels, request_keys
from analyzer.events.lineparser import EventParser
from analyzer.events.units import (
    EPOCH_DIVISOR,
    MAX_EPOCH,
    MAX_LATENCY,
    MIN_EPOCH,
    UNIT_DIVISOR,
    UNSET,
    named,
)

CHUNK = 1024
MODEL_FIRST_BELOW = 0.5
"""Below this share of watched lines in the last batch, the model is read before the rest."""
_MODEL = attrgetter("f_model")


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
            # Strings too: Envoy's json_format writes every number as a string and an unset
            # one as "-", which a float field would refuse (sending the line to the slow path).
            "status": int | str | None,
            "ttft": float | str | None,
            "duration": float | str | None,
            "prompt_tokens": float | str | None,
            "completion_tokens": float | str | None,
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
            n: UNIT_DIVISOR[fields[n].unit or "s"] for n in ("ttft", "duration") if n in fields
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
        wanted = labels.lookup(lambda name: not named(name) or name in models, bool)
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
            return Columns.in_line_order([fast, self._slow(lines, sorted(slow))])
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
            # Anything msgspec raises (a refused type, RecursionError on a deeply nested value
            # it skips, a bug) sends only the failing lines to the per-line parser, which gives
            # each its reason (too_deep, not_json, ...): one line, never the batch.
            except Exception:
                for i, line in enumerate(chunk, start):
                    if len(line) > limit:
                        failed.append(i)
                        continue
                    try:
                        rows.append(decode(line))
                    except Exception:
                        failed.append(i)
        return rows, failed

    def _slow(self, lines: list[bytes], which: Iterable[int]) -> Columns:
        cols, rejected = self.parser.parse_lines(lines, which)
        self.rejected += rejected
        return cols

    def _column(self, rows: list[Any], name: str) -> FloatArray:
        """A numeric field as floats: None (not logged) is NaN; a logged NaN or infinity
        becomes -1, which fails the range check and sends the line to the per-line parser
        (it rejects it as non_finite)."""
        if name not in self._names:
            return np.full(len(rows), math.nan)
        values = list(map(attrgetter(f"f_{name}"), rows))
        if any(type(v) is str for v in values):
            values = [_number(v) if type(v) is str else v for v in values]
        column = np.array(values, dtype=np.float64)
        nan = np.isnan(column)
        if nan.any() and int(nan.sum()) != values.count(None):  # a logged NaN among them
            logged = np.array([v is not None for v in values], dtype=bool)
            column[nan & logged] = -1.0
        column[np.isinf(column)] = -1.0
        return column

    def _timestamps(self, raw: list[Any]) -> FloatArray:
        if self._ts_format not in ("rfc3339", "auto"):
            return np.array(raw, dtype=np.float64) / EPOCH_DIVISOR[self._ts_format]
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
            kind = labels.lookup(lambda name: int(name in models) if named(name) else 2, np.int8)
            kinds = kind[model]
            self.parser.stats.ignored += int(np.count_nonzero(kinds == 0))
            slow.extend(where[kinds == 2].tolist())
            if not (kinds == 1).all():
                keep = np.flatnonzero(kinds == 1)
                rows = [rows[i] for i in keep]
                where = where[keep]
                model = model[keep]
        n = len(rows)
        raw_targets = map(attrgetter("f_target"), rows)
        target_of = self.parser.target_of
        target = labels.encode(
            list(raw_targets if target_of is None else map(target_of, raw_targets))
        )
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
            ok = (ts >= MIN_EPOCH) & (ts <= MAX_EPOCH)
            for arr in (ttft, duration):  # the per-line parser says out_of_range (or not)
                ok &= np.isnan(arr) | ((arr > 0) & (arr <= MAX_LATENCY))
            for arr in (prompt, completion):
                ok &= np.isnan(arr) | (arr >= 0)
            for arr in (prompt, completion):
                ok &= np.isnan(arr) | (arr == np.floor(arr))
            ok &= np.isnan(status) | (
                (status >= 0) & (status <= 999) & (status == np.floor(status))
            )
        has_name = labels.lookup(named, bool)
        ok &= has_name[model] & has_name[target]  # else the per-line parser says missing_field
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
            request=(
                request_keys(list(map(attrgetter("f_request_id"), rows)))[keep]
                if "request_id" in names
                else np.empty(0, dtype=np.uint64)
            ),
        )

    def _errors(
        self, status: FloatArray, labels: Labels, finish: IntArray
    ) -> npt.NDArray[np.bool_]:
        rule = self.parser.is_error
        err = rule.statuses(status)
        if rule.finish_reasons:
            err |= rule.reasons(labels.names())[finish]
        return err


def _number(text: str) -> float | None:
    """A number logged as a string: "-" is unset (None); anything not a finite number is -1,
    which fails the range checks and sends the line to the per-line parser for its reason."""
    if text == UNSET:
        return None
    try:
        value = float(text)
    except ValueError:
        return -1.0
    return value if math.isfinite(value) else -1.0


def _decoded_at(n: int, failed: list[int]) -> IntArray:
    """Positions 0..n-1 but ``failed``: where each decoded row came from."""
    decoded = np.ones(n, dtype=bool)
    decoded[failed] = False
    return np.flatnonzero(decoded)
