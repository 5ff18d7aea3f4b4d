"""What both parsers share: unit and epoch divisors, the range of event times, the error rule.

Must not: parse lines or know a field map; import anything but numpy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

# Divisors, not factors: 900000 / 1e6 is 0.9, 900000 * 1e-6 is not.
UNIT_DIVISOR = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
EPOCH_DIVISOR = {"epoch_s": 1.0, "epoch_ms": 1e3, "epoch_us": 1e6, "epoch_ns": 1e9}
# Accept event times between 2001 and 2286: anything else is a unit mistake, not a request.
MIN_EPOCH, MAX_EPOCH = 1e9, 1e10

MAX_LATENCY = 3600.0
"""Seconds. A TTFT or request duration above an hour is a unit mistake or garbage (1e300 ms),
and one of zero on a successful request is not a measurement: either is rejected
(``out_of_range.<metric>``), never a sample. Zero on an error line is taken as unmeasured."""

UNSET = "-"
"""What Envoy's ``json_format`` writes for a value it does not have (a 503 ``UF`` line has
``"response_duration":"-"``): missing, like null, never a malformed line."""


def named(value: str | None) -> bool:
    """Whether a model or adapter field names something (not empty, null or ``-``)."""
    return bool(value) and value != UNSET


class ErrorRule:
    """Which requests are errors: a status in ``statuses`` (exact codes, or classes such as
    ``"5xx"``), or a finish reason in ``finish_reasons``."""

    def __init__(self, statuses: Iterable[int | str], finish_reasons: Iterable[str]) -> None:
        statuses = list(statuses)
        self.exact = frozenset(s for s in statuses if isinstance(s, int))
        self.classes = frozenset(int(s[0]) for s in statuses if isinstance(s, str))
        self.finish_reasons = frozenset(finish_reasons)

    def __call__(self, status: int | None, finish_reason: str | None) -> bool:
        by_status = status is not None and (status in self.exact or status // 100 in self.classes)
        return by_status or finish_reason in self.finish_reasons

    def statuses(self, status: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """The status part for a column (NaN: not logged, not an error by status)."""
        with np.errstate(invalid="ignore"):
            return np.isin(status, list(self.exact)) | np.isin(
                np.floor(status / 100), list(self.classes)
            )

    def reasons(self, names: list[str | None]) -> npt.NDArray[np.bool_]:
        """The finish-reason part, for a table of names (to index with label codes)."""
        return np.array([n in self.finish_reasons for n in names], dtype=bool)


def tpot(
    ttft: npt.NDArray[np.float64],
    duration: npt.NDArray[np.float64],
    completion_tokens: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Seconds per output token after the first, where defined (two tokens or more, both
    times logged); the other rows are dropped."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values: npt.NDArray[np.float64] = np.maximum(0.0, duration - ttft) / (completion_tokens - 1)
    values = values[completion_tokens >= 2]
    kept: npt.NDArray[np.float64] = values[~np.isnan(values)]
    return kept
