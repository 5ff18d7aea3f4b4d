"""How one access-log line is read: field paths, units, the error rule.

Must not: parse lines (analyzer/events does).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from analyzer.config.base import RuleModel
from analyzer.config.presets import PRESETS

CanonicalField = Literal[
    "timestamp",
    "model",
    "target",
    "status",
    "ttft",
    "duration",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "request_id",
]
TimeUnit = Literal["s", "ms", "us", "ns"]
TimestampFormat = Literal["auto", "rfc3339", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns"]


class FieldSpec(RuleModel):
    """Where a canonical field sits in a JSON log line (dotted path) and in which unit."""

    path: str = Field(min_length=1)
    unit: TimeUnit | None = None
    format: TimestampFormat | None = None
    pattern: str | None = Field(
        default=None,
        description="target only: a regular expression whose one capture group is the name "
        "(e.g. the pool in an Envoy cluster name); a value it does not match is kept whole",
    )

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if groups != 1:
            raise ValueError(
                f"pattern needs exactly one capture group (the name), it has {groups}; "
                "write other groups as (?:...)"
            )
        return value


def _field_spec(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


FieldRef = Annotated[FieldSpec, BeforeValidator(_field_spec)]

REQUIRED_FIELDS: tuple[CanonicalField, ...] = ("timestamp", "model", "target")


class EventsSpec(RuleModel):
    """How to read one access-log line."""

    preset: str | None = None
    fields: dict[CanonicalField, FieldRef] = Field(default_factory=dict)
    error_statuses: list[int | str] = Field(
        default_factory=lambda: list[int | str](["5xx"]),
        description="status codes counted as errors: 503, or a class such as 5xx",
    )
    error_finish_reasons: list[str] = Field(default_factory=lambda: ["error"])
    max_line_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; known: {', '.join(sorted(PRESETS))}")
        return value

    @field_validator("error_statuses")
    @classmethod
    def _status_patterns(cls, value: list[int | str]) -> list[int | str]:
        for item in value:
            if isinstance(item, int):
                if not 100 <= item <= 599:
                    raise ValueError(f"status {item} is not an HTTP status")
            elif not re.fullmatch(r"[1-5]xx", item):
                raise ValueError(f"{item!r} is neither a status code nor a class like 5xx")
        return value

    @model_validator(mode="after")
    def _pattern_on_target_only(self) -> EventsSpec:
        others = sorted(n for n, f in self.fields.items() if f.pattern and n != "target")
        if others:
            raise ValueError(f"pattern is read for the target field only, not {', '.join(others)}")
        return self

    @model_validator(mode="after")
    def _required_mapped(self) -> EventsSpec:
        mapped = set(self.resolved_fields())
        missing = [f for f in REQUIRED_FIELDS if f not in mapped]
        if missing:
            raise ValueError("events need a preset or a mapping for: " + ", ".join(missing))
        return self

    def resolved_fields(self) -> dict[str, FieldSpec]:
        """The preset's fields overlaid with the explicit ones."""
        out: dict[str, FieldSpec] = {}
        if self.preset:
            out.update({k: FieldSpec.model_validate(v) for k, v in PRESETS[self.preset].items()})
        out.update({str(k): v for k, v in self.fields.items()})
        return out
