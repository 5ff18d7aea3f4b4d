"""The pieces every rule model shares: the apiVersion, durations, alpha, the base model.

Must not: import another module of the package.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

API_VERSION = "canary-analyzer.io/v1alpha1"

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """'90s', '1m30s', '500ms', '2h' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h))+$"},
            ],
            "description": "seconds, or a string such as 10s, 5m, 1h30m, 500ms",
        }
    ),
]


class RuleModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


Alpha = Annotated[
    float,
    Field(
        gt=0,
        lt=0.5,
        description="per side, over the whole rollout: the chance of a false rollback "
        "(before Holm) and of a false promotion",
    ),
]
