"""The embedded engine: lines in, event time forward, controllers judged when due.

Event time drives everything: the clock is the newest event timestamp seen, and every
controller whose judgment falls due at or before it is judged before the event is folded in (a
judgment at T sees the events up to T). The same engine serves ``run``, ``replay`` and
``simulate``; live sources only differ in where lines come from.

Must not: read the wall clock; know where lines come from.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from analyzer.config import EventsSpec
from analyzer.events.access import ParseStats
from analyzer.events.columns import Columns
from analyzer.events.dedupe import DUPLICATE, RequestDedupe
from analyzer.events.ruleset import RuleSetParser
from analyzer.events.skew import DEFAULT_MAX_SKEW, FUTURE, STALE, lone_future, skewed
from analyzer.runtime.controller import RolloutController

RowReason = tuple[int, str]


class Engine:
    def __init__(
        self,
        controllers: Sequence[RolloutController],
        is_leader: Callable[[], bool] = lambda: True,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        self.is_leader = is_leader
        self.max_skew = max_skew
        self.event_clock: float | None = None
        """The newest accepted event time (``now`` may start from the wall, in the daemon)."""
        self._lone: float | None = None
        self._refused: Counter[str] = Counter()
        """Rows parsed and accepted, then refused here: by the clock, or as duplicates."""
        self.dedupe = RequestDedupe()
        self._rejected_seen: Counter[str] = Counter()
        self._leading = False
        self._retired = ParseStats()
        """Counts no current parser holds: parsers of earlier rule sets, other processes."""
        self.parser = RuleSetParser(())
        self.now: float | None = None
        self.started = False
        self._wire(list(controllers))

    def _wire(self, controllers: list[RolloutController]) -> None:
        self.controllers = controllers
        self.by_model: dict[str, list[RolloutController]] = defaultdict(list)
        for c in self.controllers:
            self.by_model[c.spec.model].append(c)
        self._retired.merge(self.parser.stats)  # counts survive a change of rules
        # Rules with the same event mapping share one parser: each line is decoded once.
        specs: dict[str, tuple[EventsSpec, set[str]]] = {}
        for c in self.controllers:
            key = c.spec.events.model_dump_json()
            specs.setdefault(key, (c.spec.events, set()))[1].add(c.spec.model)
        self.parser = RuleSetParser(specs.values())

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
        total.merge(self.parser.stats)
        # Parsed and accepted, then refused by the clock (events/skew.py) or as duplicates
        # (events/dedupe.py): rejected instead.
        total.accepted -= sum(self._refused.values())
        total.rejected_by_reason.update(self._refused)
        return total

    def screen(self, cols: Columns, wall: float | None = None) -> tuple[Columns, list[RowReason]]:
        """The rows the event clock can believe, and (line, reason) of those it cannot (too
        far ahead of the wall or the clock, or behind it: events/skew.py); counted."""
        future, stale = skewed(cols.timestamp, self.event_clock, wall, self.max_skew, self._lone)
        if wall is None:
            self._lone = lone_future(cols.timestamp, future)
        bad = future | stale
        if len(cols):
            newest = float(cols.timestamp[~bad].max(initial=-math.inf))
            if math.isfinite(newest):
                self.event_clock = max(self.event_clock or newest, newest)
        if not bad.any():
            return cols, []
        where = np.flatnonzero(bad)
        rejected = [(int(cols.index[i]), FUTURE if future[i] else STALE) for i in where]
        self._refused.update(reason for _, reason in rejected)
        return cols.take(np.flatnonzero(~bad)), rejected

    def _charge_rejected(self) -> None:
        """Lines rejected since the last call count against every running step (the
        data-quality gate): a line that cannot be read names no trustworthy rule or time."""
        total = Counter(self.stats.rejected_by_reason)
        del total[DUPLICATE]  # a repeat loses nothing: the first copy is in the evidence
        new = total - self._rejected_seen
        if not new:
            return
        self._rejected_seen = total
        for c in self.controllers:
            if c.active and c.windows is not None:
                c.windows.rejected.update(new)

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
            # Each due controller is judged once, at its last judgment time up to now: no
            # event arrived in between (feed advances before the first row past a judgment),
            # so a gap in event time is one judgment, not one per interval of it.
            due = {c: self._last_due(c, now) for c in self.controllers if c.due(now)}
            if not due:
                break
            first = min(due.values())
            for c, at in due.items():
                if at <= first:
                    await c.tick(first)
        for c in self.controllers:
            await c.settle_outbox(now)
        self.now = now

    @staticmethod
    def _last_due(c: RolloutController, now: float) -> float:
        assert c.next_judgment_at is not None
        interval = c.spec.analysis.interval
        return c.next_judgment_at + math.floor((now - c.next_judgment_at) / interval) * interval

    async def feed(self, cols: Columns, wall: float | None = None) -> None:
        """Fold rows in arrival order, judging on the way: rows before the next judgment are
        folded at once, and each judgment happens before the first row that moves the clock
        to its time (a judgment at T sees the events up to T, as one event at a time would).
        Rows the clock cannot believe are screened out first (``screen``; ``wall``: the wall
        time, for a live source)."""
        cols, _ = self.screen(cols, wall)
        repeated = self.dedupe.duplicates(cols)
        if repeated.any():
            self._refused[DUPLICATE] += int(repeated.sum())
            cols = cols.take(np.flatnonzero(~repeated))
        n = len(cols)
        if n == 0:
            self._charge_rejected()
            return
        ts = cols.timestamp
        # The clock never goes back: a late row is folded at the time already reached, so
        # rows need not be sorted (a file's are only nearly so).
        clock = np.maximum.accumulate(ts)
        # Leadership is followed at both ends of every batch, as one event at a time would
        # (advancing to a time no judgment is due at judges nothing): a follower that now
        # leads begins before the rows it can use.
        await self.advance(float(clock[0]))
        self._charge_rejected()  # after the first advance: a rollout begun there counts them
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
        await self.advance(float(clock[-1]))

    def _fold(self, cols: Columns, start: int, stop: int) -> None:
        models = cols.model[start:stop]
        for model, controllers in self.by_model.items():
            code = cols.code(model)
            if code is None:
                continue
            mine = np.flatnonzero(models == code) + start
            if mine.size:
                for c in controllers:
                    c.fold(cols, mine)

    async def feed_lines(self, lines: list[bytes], wall: float | None = None) -> None:
        """Parse and fold lines of a text log in their order (rejected ones counted by
        reason, blank ones skipped uncounted: a file's blank line is not a record)."""
        await self.feed(self.parser.parse([line for line in lines if line.strip()]), wall)

    async def close(self, timeout: float = 10.0) -> None:
        """Flush every controller's notifications, all at once (bounded by ``timeout``)."""
        await asyncio.gather(*(c.aclose(timeout) for c in self.controllers))

    async def finish(self) -> None:
        """Judge once more at the last event time: the tail of a log is evidence too."""
        if self.now is None:
            return
        for c in self.controllers:
            if c.active:
                c.next_judgment_at = self.now
                await c.tick(self.now)
