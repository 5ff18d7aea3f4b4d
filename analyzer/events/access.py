"""One gateway request as an object, and the counts of every line's outcome.

The pipeline carries columns (columns.py); an ``AccessEvent`` is what the per-line parser
builds on its way there, what tests write and what a column batch is built from by hand.

Must not: parse lines or know a field map.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.events.units import tpot


@dataclass(frozen=True, slots=True)
class AccessEvent:
    timestamp: float
    """Epoch seconds."""
    model: str
    """Virtual model the client asked for."""
    target: str
    """Adapter that served the request."""
    status: int | None = None
    ttft: float | None = None
    """Seconds to the first byte of the response."""
    duration: float | None = None
    """Seconds, request start to last byte."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    is_error: bool = False

    @property
    def tpot(self) -> float | None:
        """Seconds per output token after the first (the windows' definition, units.tpot)."""
        nan = math.nan

        def column(value: float | None) -> npt.NDArray[np.float64]:
            return np.array([nan if value is None else value], dtype=np.float64)

        values = tpot(column(self.ttft), column(self.duration), column(self.completion_tokens))
        return float(values[0]) if values.size else None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass
class ParseStats:
    accepted: int = 0
    ignored: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def merge(self, other: ParseStats) -> None:
        self.accepted += other.accepted
        self.ignored += other.ignored
        self.rejected_by_reason.update(other.rejected_by_reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "ignored": self.ignored,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }
