"""The embedded engine: lines in, event time forward, controllers judged when due.

Event time drives everything: the clock is the newest event timestamp seen, and every
controller whose judgment falls due at or before it is judged before the event is folded in (a
judgment at T sees the events up to T). The same engine serves ``run``, ``replay`` and
``simulate``; live sources only differ in where lines come from.

Must not: read the wall clock; know where lines come from.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from analyzer.analysis.windows import Position
from analyzer.batch import BatchParser, Columns
from analyzer.config import EventsSpec
from analyzer.events import AccessEvent, EventParser, ParseStats
from analyzer.runtime.controller import RolloutController


class Engine:
    def __init__(
        self,
        controllers: Sequence[RolloutController],
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.is_leader = is_leader
        self._leading = False
        self._retired = ParseStats()
        """Counts no current parser holds: parsers of earlier rule sets, other processes."""
        self.parsers: list[EventParser] = []
        self.now: float | None = None
        self.started = False
        self._wire(list(controllers))

    def _wire(self, controllers: list[RolloutController]) -> None:
        self.controllers = controllers
        self.by_model: dict[str, list[RolloutController]] = defaultdict(list)
        for c in self.controllers:
            self.by_model[c.spec.model].append(c)
        for parser in self.parsers:  # counts survive a change of rules
            self._retired.merge(parser.stats)
        # Rules with the same event mapping share one parser: each line is decoded once.
        specs: dict[str, tuple[EventsSpec, set[str]]] = {}
        for c in self.controllers:
            key = c.spec.events.model_dump_json()
            specs.setdefault(key, (c.spec.events, set()))[1].add(c.spec.model)
        self.parsers = [EventParser(spec, models) for spec, models in specs.values()]
        # The batch path needs one mapping for every line; several mappings parse per line.
        self.batch = BatchParser(self.parsers[0]) if len(self.parsers) == 1 else None

    async def set_controllers(self, controllers: Sequence[RolloutController]) -> None:
        """Swap the rule set while running (hot reload): controllers that left are closed,
        new ones begin (adopting their state from the object) when this replica leads."""
        kept = {id(c) for c in controllers}
        for old in self.controllers:
            if id(old) not in kept:
                await old.aclose(timeout=5.0)
        fresh = [c for c in controllers if c not in self.controllers]
        self._wire(list(controllers))
        if self.started and self._leading and self.now is not None:
            for c in fresh:
                await c.begin(self.now)

    def count_parsed(self, counts: ParseStats) -> None:
        """Add the counts of lines parsed elsewhere (a parsing process) to the totals."""
        self._retired.merge(counts)

    @property
    def stats(self) -> ParseStats:
        total = ParseStats()
        total.merge(self._retired)
        for parser in self.parsers:
            total.merge(parser.stats)
        return total

    @property
    def finished(self) -> bool:
        return self.started and not any(c.active for c in self.controllers)

    async def start(self, now: float) -> None:
        self.now = now
        self.started = True
        await self._follow_leadership(now)

    async def _follow_leadership(self, now: float) -> bool:
        """Begin (adopt or start) every rollout when leadership is gained; a follower only
        keeps the clock. Returns whether this replica leads."""
        leading = self.is_leader()
        if leading and not self._leading:
            for c in self.controllers:
                await c.begin(now)  # the previous leader may have moved on: read it back
        self._leading = leading
        return leading

    async def advance(self, now: float) -> None:
        """Move event time to ``now``, judging every controller due on the way."""
        if not self.started:
            await self.start(now)
        assert self.now is not None
        # Leadership is followed on every call, even one that does not move the clock: a
        # follower's clock runs ahead on events, and it must still notice that it now leads.
        leading = await self._follow_leadership(max(now, self.now))
        if now < self.now:
            return
        if not leading:
            self.now = now
            return
        while True:
            due = [c for c in self.controllers if c.due(now) and c.next_judgment_at is not None]
            if not due:
                break
            first = min(c.next_judgment_at or now for c in due)
            for c in due:
                if c.next_judgment_at is not None and c.next_judgment_at <= first:
                    await c.tick(first)
        self.now = now

    async def feed_event(self, event: AccessEvent, position: Position | None = None) -> None:
        await self.advance(event.timestamp)
        for c in self.by_model.get(event.model, ()):
            c.observe(event, position)

    async def feed_columns(self, cols: Columns) -> None:
        """The batch path of ``feed_event`` for rows in arrival order: rows before the next
        judgment are folded at once, and judgments happen exactly where the per-event path
        would have made them (before the first row that moves the clock to their time)."""
        n = len(cols)
        if n == 0:
            return
        ts = cols.timestamp
        # The clock never goes back: a late row is folded at the time already reached, as
        # feed_event does, so rows need not be sorted (a file's are only nearly so).
        clock = np.maximum.accumulate(ts)
        if not self.started:
            await self.start(float(ts[0]))
        i = 0
        while i < n:
            due = min(
                (
                    c.next_judgment_at
                    for c in self.controllers
                    if c.active and c.next_judgment_at is not None
                ),
                default=math.inf,
            )
            j = max(i, int(np.searchsorted(clock, due, side="left")))
            if j > i:
                self._fold(cols, i, j)
            if j >= n:
                break
            await self.advance(float(clock[j]))
            i = j
        assert self.now is not None
        self.now = max(self.now, float(clock[-1]))

    def _fold(self, cols: Columns, start: int, stop: int) -> None:
        models = cols.model[start:stop]
        for model, controllers in self.by_model.items():
            code = cols.code(model)
            if code is None:
                continue
            mine = np.flatnonzero(models == code) + start
            if mine.size:
                for c in controllers:
                    c.observe_columns(cols, mine)

    def parse(self, line: bytes | str) -> tuple[AccessEvent | None, str | None]:
        """The line's event (None if ignored or rejected) and its rejection reason, if any."""
        reason: str | None = None
        for parser in self.parsers:
            before = parser.stats.rejected
            event = parser.parse_line(line)
            if event is not None:
                return event, None
            if parser.stats.rejected > before:
                reason = parser.last_rejection
        return None, reason

    async def feed_line(self, line: bytes | str) -> str | None:
        """Parse and fold one line; returns the rejection reason of a malformed line."""
        event, reason = self.parse(line)
        if event is not None:
            await self.feed_event(event)
        return reason

    async def feed_batch(self, lines: list[bytes]) -> None:
        """Parse and fold lines in their order, with the outcome of ``feed_line`` on each:
        in columns when every rule reads the same mapping (several times faster)."""
        lines = [line for line in lines if line.strip()]
        if self.batch is None:
            for line in lines:
                await self.feed_line(line)
            return
        await self.feed_columns(self.batch.parse(lines))

    async def close(self, timeout: float = 10.0) -> None:
        """Flush every controller's notifications (each bounded by ``timeout``)."""
        for c in self.controllers:
            await c.aclose(timeout)

    async def finish(self) -> None:
        """Judge once more at the last event time: the tail of a log is evidence too."""
        if self.now is None:
            return
        for c in self.controllers:
            if c.active:
                c.next_judgment_at = self.now
                await c.tick(self.now)
