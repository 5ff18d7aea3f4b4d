"""The per-line parser: one JSON log line at a time, by a configurable field map.

The parser never raises on input. A line is either accepted (an ``AccessEvent``), ignored (a
well-formed request for a virtual model no rule watches) or rejected and counted under one
reason (``not_json``, ``missing_field.ttft``, ``negative_value.duration``...). Counters are
shared by every source (file, stdin, Kafka) so an SRE sees every line accounted for.

Must not: know about rollouts, windows or transports.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson

from analyzer.config import EventsSpec, FieldSpec
from analyzer.events.access import AccessEvent, ParseStats
from analyzer.events.columns import Columns
from analyzer.events.units import (
    EPOCH_DIVISOR,
    MAX_EPOCH,
    MAX_LATENCY,
    MIN_EPOCH,
    UNIT_DIVISOR,
    UNSET,
    ErrorRule,
)


class Rejected(Exception):
    """Internal: why a line was refused. Never escapes the parser."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_MISSING = object()


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    parts = path.split(".")
    if len(parts) == 1:
        return lambda obj: obj.get(path, _MISSING)

    def get(obj: dict[str, Any]) -> Any:
        if path in obj:  # a key that itself contains dots
            return obj[path]
        cur: Any = obj
        for part in parts:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return _MISSING
        return cur

    return get


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise Rejected(f"wrong_type.{name}")
    if isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str):
        try:
            num = float(value)
        except ValueError:
            raise Rejected(f"wrong_type.{name}") from None
    else:
        raise Rejected(f"wrong_type.{name}")
    if not math.isfinite(num):
        raise Rejected(f"non_finite.{name}")
    return num


def _epoch(value: float, fmt: str) -> float:
    if fmt in EPOCH_DIVISOR:
        return value / EPOCH_DIVISOR[fmt]
    magnitude = abs(value)
    if magnitude >= 1e17:
        return value / 1e9
    if magnitude >= 1e14:
        return value / 1e6
    if magnitude >= 1e11:
        return value / 1e3
    return value


def _timestamp(value: Any, fmt: str) -> float:
    if isinstance(value, str) and fmt in ("auto", "rfc3339"):
        try:
            ts = datetime.fromisoformat(value.strip()).timestamp()
        except ValueError:
            if fmt == "rfc3339":
                raise Rejected("bad_timestamp") from None
            try:
                ts = _epoch(float(value), fmt)
            except ValueError:
                raise Rejected("bad_timestamp") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if fmt == "rfc3339" or not math.isfinite(value):
            raise Rejected("bad_timestamp")
        ts = _epoch(float(value), fmt)
    elif isinstance(value, str):
        try:
            ts = _epoch(float(value), fmt)
        except ValueError:
            raise Rejected("bad_timestamp") from None
    else:
        raise Rejected("bad_timestamp")
    if not (MIN_EPOCH <= ts <= MAX_EPOCH):
        raise Rejected("bad_timestamp")
    return ts


def _extractor(pattern: re.Pattern[str]) -> Callable[[str], str]:
    """The capture group of the first match, or the value whole when it does not match (it
    then names no adapter of the rule and counts as unattributed). Cached: a log has few
    distinct cluster names, and the batch parser maps every row."""

    @functools.lru_cache(maxsize=4096)
    def name(value: str) -> str:
        found = pattern.search(value)
        return value if found is None or found.group(1) is None else found.group(1)

    return name


class EventParser:
    """Turns log lines into AccessEvents with one rule set's field mapping.

    ``models``: the virtual models someone watches; others are counted as ignored. None keeps all.
    """

    def __init__(self, spec: EventsSpec, models: Iterable[str] | None = None) -> None:
        self.spec = spec
        self.models = frozenset(models) if models is not None else None
        self.stats = ParseStats()
        self.last_rejection: str | None = None
        fields = spec.resolved_fields()
        self._fields: dict[str, tuple[FieldSpec, Callable[[dict[str, Any]], Any]]] = {
            name: (fs, _getter(fs.path)) for name, fs in fields.items()
        }
        self.is_error = ErrorRule(spec.error_statuses, spec.error_finish_reasons)
        self._max = spec.max_line_bytes
        pattern = fields["target"].pattern
        self.target_of: Callable[[str], str] | None = (
            _extractor(re.compile(pattern)) if pattern else None
        )
        """The target's name in its raw value (the ``pattern``), None when it is the value."""

    def parse_line(self, line: bytes | str) -> AccessEvent | None:
        """One line in, an event or None out; the outcome is always counted."""
        return self._counted(self._parse, line)

    def parse_lines(
        self, lines: list[bytes], which: Iterable[int]
    ) -> tuple[Columns, list[tuple[int, str]]]:
        """The lines at ``which`` as columns (``index`` says which line each row is), and the
        (line, reason) of each rejected one."""
        index: list[int] = []
        events: list[AccessEvent] = []
        rejected: list[tuple[int, str]] = []
        for i in which:
            before = self.stats.rejected
            event = self.parse_line(lines[i])
            if event is not None:
                index.append(i)
                events.append(event)
            elif self.stats.rejected > before and self.last_rejection is not None:
                rejected.append((i, self.last_rejection))
        return Columns.from_events(index, events), rejected

    def parse_object(self, obj: Any) -> AccessEvent | None:
        """As parse_line, for an already-decoded JSON value."""
        return self._counted(self._from_object, obj)

    def _counted(self, parse: Callable[[Any], AccessEvent | None], raw: Any) -> AccessEvent | None:
        try:
            event = parse(raw)
        except Rejected as rej:
            self._rejected(rej.reason)
            return None
        except (RecursionError, MemoryError):
            self._rejected("too_deep")
            return None
        except Exception:  # a parser bug on one line must cost that line, never a batch
            self._rejected("parser_error")
            return None
        if event is None:
            self.stats.ignored += 1
            return None
        self.stats.accepted += 1
        return event

    def _rejected(self, reason: str) -> None:
        self.stats.rejected_by_reason[reason] += 1
        self.last_rejection = reason

    def _parse(self, line: bytes | str) -> AccessEvent | None:
        if len(line) > self._max:
            raise Rejected("too_long")
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # orjson refuses nesting deeper than 1024 levels (and says so).
            raise Rejected("too_deep" if "depth" in str(exc) else "not_json") from None
        return self._from_object(obj)

    def _get(self, obj: dict[str, Any], name: str, required: bool) -> Any:
        entry = self._fields.get(name)
        value = entry[1](obj) if entry is not None else _MISSING
        # Envoy's json_format writes an unset value as "-" (typed_json_format as null).
        if value is _MISSING or value is None or value == UNSET:
            if required:
                raise Rejected(f"missing_field.{name}")
            return None
        return value

    def _text(self, obj: dict[str, Any], name: str, required: bool) -> str | None:
        value = self._get(obj, name, required)
        if value is None:
            return None
        if isinstance(value, str):
            if required and not value:
                raise Rejected(f"missing_field.{name}")
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise Rejected(f"wrong_type.{name}")

    def _non_negative(self, obj: dict[str, Any], name: str) -> float | None:
        value = self._get(obj, name, False)
        if value is None:
            return None
        num = _number(value, name)
        if num < 0:
            raise Rejected(f"negative_value.{name}")
        return num

    def _latency(self, obj: dict[str, Any], name: str, is_error: bool) -> float | None:
        num = self._non_negative(obj, name)
        if num is None:
            return None
        unit = self._fields[name][0].unit or "s"
        seconds = num / UNIT_DIVISOR[unit]
        if seconds == 0 and is_error:
            return None  # a failed request that never got that far
        if not 0 < seconds <= MAX_LATENCY:
            raise Rejected(f"out_of_range.{name}")
        return seconds

    def _count(self, obj: dict[str, Any], name: str) -> int | None:
        num = self._non_negative(obj, name)
        if num is None:
            return None
        if num != int(num):
            raise Rejected(f"wrong_type.{name}")
        return int(num)

    def _from_object(self, obj: Any) -> AccessEvent | None:
        if not isinstance(obj, dict):
            raise Rejected("not_object")
        model = self._text(obj, "model", True)
        assert model is not None
        if self.models is not None and model not in self.models:
            return None
        # A line of a watched model that names no adapter is kept: the rule counts it as
        # unattributed (with the lines of adapters in neither group) instead of losing it.
        target = self._text(obj, "target", False) or ""
        if self.target_of is not None:
            target = self.target_of(target)
        ts_spec = self._fields["timestamp"][0]
        ts = _timestamp(self._get(obj, "timestamp", True), ts_spec.format or "auto")
        status_raw = self._get(obj, "status", False)
        status: int | None = None
        if status_raw is not None:
            num = _number(status_raw, "status")
            if num != int(num) or not 0 <= num <= 999:
                raise Rejected("wrong_type.status")
            status = int(num)
        finish = self._text(obj, "finish_reason", False)
        is_error = self.is_error(status, finish)
        return AccessEvent(
            timestamp=ts,
            model=model,
            target=target,
            status=status,
            ttft=self._latency(obj, "ttft", is_error),
            duration=self._latency(obj, "duration", is_error),
            prompt_tokens=self._count(obj, "prompt_tokens"),
            completion_tokens=self._count(obj, "completion_tokens"),
            finish_reason=finish,
            request_id=self._text(obj, "request_id", False),
            is_error=is_error,
        )
