"""Familywise corrections across the checks of one judgment.

Must not: know what a check is; it maps p-values to adjusted p-values, order preserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Correction = Literal["holm", "bonferroni", "none"]


def adjust(p_values: Sequence[float], method: Correction) -> list[float]:
    """Adjusted p-values: compare each with the check's own alpha."""
    m = len(p_values)
    if method == "none" or m <= 1:
        return [min(1.0, p) for p in p_values]
    if method == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
