"""A rule set's parser: one batch parser per field map, the lines one accepts not offered to
the next, the accepted rows merged back into line order.

Rules with the same field map share one parser, so each line is decoded once per map; the
maps are tried in the order the rules first name them. A line is counted by every parser that
saw it (accepted by one, ignored or rejected by those before), so the totals are those of
trying each map on each line in turn. A line no map accepts keeps the reason of the last map
that rejected it.

Must not: do I/O, or decide anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from analyzer.config import EventsSpec
from analyzer.events.access import ParseStats
from analyzer.events.batchparser import BatchParser
from analyzer.events.columns import Columns
from analyzer.events.lineparser import EventParser

ParserKey = tuple[str, tuple[str, ...] | None]
"""A field map (as JSON) and the models it is read for: enough to rebuild a parser elsewhere."""


class RuleSetParser:
    def __init__(self, maps: Iterable[tuple[EventsSpec, Iterable[str] | None]]) -> None:
        self.parsers = [BatchParser(EventParser(spec, models)) for spec, models in maps]
        self.rejected: list[tuple[int, str]] = []
        """(line, reason) of each line of the last batch that no map accepted."""

    @classmethod
    def from_keys(cls, keys: Iterable[ParserKey]) -> RuleSetParser:
        return cls((EventsSpec.model_validate_json(spec), models) for spec, models in keys)

    @property
    def keys(self) -> tuple[ParserKey, ...]:
        return tuple(
            (
                p.parser.spec.model_dump_json(),
                tuple(sorted(p.parser.models)) if p.parser.models is not None else None,
            )
            for p in self.parsers
        )

    @property
    def stats(self) -> ParseStats:
        total = ParseStats()
        for p in self.parsers:
            total.merge(p.parser.stats)
        return total

    def reset_stats(self) -> None:
        for p in self.parsers:
            p.parser.stats = ParseStats()

    def parse(self, lines: list[bytes]) -> Columns:
        """The accepted rows of ``lines``, in line order."""
        pending = np.arange(len(lines), dtype=np.int64)
        reasons: dict[int, str] = {}
        parts: list[Columns] = []
        for parser in self.parsers:
            if pending.size == 0:
                break
            # The first map reads the batch as it came (no copy, no index mapping: the hot
            # path of a rule set with one field map); later ones only what is left.
            whole = pending.size == len(lines)
            cols = parser.parse(lines if whole else [lines[i] for i in pending.tolist()])
            if not whole:
                cols.index = pending[cols.index]
            reasons.update((int(pending[i]), reason) for i, reason in parser.rejected)
            if len(cols):
                parts.append(cols)
                pending = np.setdiff1d(pending, cols.index, assume_unique=True)
        left = set(pending.tolist())  # accepted by no map
        self.rejected = sorted((i, r) for i, r in reasons.items() if i in left)
        return Columns.in_line_order(parts)
