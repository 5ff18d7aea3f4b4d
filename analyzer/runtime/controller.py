"""One rule's rollout at the edge: windows in, judgments on time, actions out to the router.

A controller owns one rule. It adopts the state it finds in the object's annotation when the
revision matches (a finished rollout stays finished; a live one resumes its step), or starts a
new rollout. Every judgment reads the object first: targets that differ from what the daemon
last wrote are a human edit and pause the rollout; a command annotation is a human override.
Writes carry the version they were computed from; on a conflict the object is re-read and the
decision is made again from what is there.

A transient API failure (rollout/backoff.py) degrades the rule instead of ending it: the step,
its evidence and the judgment grid are kept, the object is read again with backoff, and when
it answers the rollout resumes from the state it holds (a recreated object without our state
starts the rollout again from its weights). Other rules are not touched. Only what waiting
cannot fix (a refused write, an object that does not route the model) is an error.

Must not: read a clock (``now`` is passed in) or parse lines.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from analyzer.analysis.judge import Verdict, judge
from analyzer.analysis.kinds import Evidence
from analyzer.analysis.steps import RolloutWindows
from analyzer.analysis.windows import DEFAULT_RAW_LIMIT, METRICS, StepWindows
from analyzer.config import LoadedRule
from analyzer.events.columns import Columns
from analyzer.gates.base import Gate
from analyzer.notify.base import Notification, Notifier
from analyzer.rollout import machine
from analyzer.rollout.backoff import Backoff
from analyzer.rollout.guards import (
    data_quality_refusal,
    targets_after,
    warmup_verdict,
)
from analyzer.rollout.machine import Announce, Command, RolloutAction
from analyzer.rollout.state import Decision, RolloutState, annotation_key, revision
from analyzer.rollout.weights import WeightError, limits_for
from analyzer.routers.base import (
    ConflictError,
    NotLeaderError,
    RoutedObject,
    RouterError,
    TrafficRouter,
    TransientRouterError,
    command_key,
)
from analyzer.runtime.announce import Announcer, gates_refusal
from analyzer.runtime.outage import OutageNotices
from analyzer.runtime.outbox import Outbox, watermark
from analyzer.runtime.reactions import Reactions
from analyzer.sources.metrics import MetricsSource, NoMetricsSource
from analyzer.stats.histogram import IntArray

log = structlog.get_logger("analyzer.controller")

JudgmentListener = Callable[["RolloutController", float, Verdict], None]
MAX_CONFLICT_RETRIES = 3


class RolloutController(OutageNotices, Outbox, Reactions):
    def __init__(
        self,
        loaded: LoadedRule,
        router: TrafficRouter,
        notifier: Notifier,
        *,
        dry_run: bool = False,
        raw_limit: int = DEFAULT_RAW_LIMIT,
        on_judgment: JudgmentListener | None = None,
        gates: Sequence[Gate] = (),
        prometheus: MetricsSource | None = None,
        rng: random.Random | None = None,
        traffic_follows: bool = False,
    ) -> None:
        """``traffic_follows``: the gateway reads the object the router writes (the cluster
        daemon), so a realized canary share far from the written one pauses the rollout; off
        for replays, whose recorded traffic followed the weights of another run."""
        self.loaded = loaded
        self.spec = loaded.rule.spec
        self.name = loaded.name
        self.revision = revision(self.spec)
        self.router = router
        self.notifier = notifier
        self.dry_run = dry_run or self.spec.analysis.dry_run
        self.traffic_follows = traffic_follows and not self.dry_run
        self.limits = limits_for(self.spec.target.kind, self.spec.target.api_version)
        self.state: RolloutState | None = None
        read = {c.metric for c in self.spec.accesslog_checks}
        self.steps = RolloutWindows(
            frozenset(self.spec.baseline),
            frozenset(self.spec.canary),
            raw_limit=raw_limit,
            metrics=tuple(m for m in METRICS if m in read),
            warmup=self.spec.analysis.warmup,
        )
        self.next_judgment_at: float | None = None
        self.announced: list[Notification] = []
        self.outbox: list[Notification] = []
        """Every notification handed over, decisions and the adopted state's re-sends."""
        self.last_verdict: Verdict | None = None
        self.error: str | None = None
        self.on_judgment = on_judgment
        self.gates = list(gates)
        self.prometheus: MetricsSource = prometheus or NoMetricsSource()
        self.last_seen_version: str | None = None
        self.judgments: Counter[tuple[str, str]] = Counter()
        """Judgments by (check, status), for the daemon's metrics."""
        self._gate_refusal: str | None = None
        self.backoff = Backoff(rng or random.Random())
        self.retired = False
        """Replaced by a reload: acts on nothing any more (its watch is stopped too)."""
        self.announcer = Announcer.of(
            self.name, self.revision, router.describe, self.spec, self.dry_run
        )
        self._log = log.bind(rule=self.name, object=router.describe)

    @property
    def windows(self) -> StepWindows | None:
        """The current step's windows."""
        return self.steps.current

    @property
    def decisions(self) -> list[Decision]:
        return [n.decision for n in self.announced]

    @property
    def degraded(self) -> str | None:
        """Why the API cannot be used now, while the rule waits for it; None when it can."""
        return self.backoff.outage.reason if self.backoff.outage is not None else None

    @property
    def active(self) -> bool:
        if self.error is not None or self.retired:
            return False
        if self.backoff.outage is not None:
            return True  # waiting for the API: the rollout is not over
        return self.state is not None and not self.state.finished

    # -- life cycle --

    async def begin(self, now: float) -> None:
        """Adopt the rollout recorded on the object, or start a new one (a new leader, or the
        first look: an earlier error is forgotten, the object is read again)."""
        self.error = None
        await self._guarded(self._begin, now)

    async def _guarded(self, attempt: Callable[[float], Awaitable[object]], now: float) -> None:
        """Run ``attempt`` again on a conflict (the object is re-read each time); a transient
        failure degrades the rule, any other ends it; success ends an outage."""
        try:
            for _ in range(MAX_CONFLICT_RETRIES):
                try:
                    await attempt(now)
                    break
                except ConflictError:
                    self._log.warning("write_conflict", retrying=True)
            else:
                raise TransientRouterError("the object kept changing under every write")
        except NotLeaderError as exc:
            # No write, no notification: the new leader reads the object and decides.
            self._log.warning("write_dropped_not_leader", error=str(exc))
            return
        except TransientRouterError as exc:
            await self._degrade(str(exc), now)
            return
        except (RouterError, WeightError) as exc:
            await self._fail(str(exc), now)
            return
        if self.backoff.outage is not None:
            await self._recovered(now)

    async def _begin(self, now: float) -> bool:
        """One attempt of begin: a ConflictError means read again and retry. True when a
        live rollout was adopted (not started, not finished)."""
        obj = await self.router.read()
        raw = obj.annotations.get(annotation_key(self.name))
        previous = self._parse_state(raw) if raw else None
        if previous is not None and previous.revision == self.revision:
            self.state = previous
            await self._resend(previous)
            self._log.info(
                "rollout_adopted",
                phase=previous.phase,
                step=previous.step,
                canary_percent=previous.canary_percent,
                revision=self.revision,
            )
            if not previous.finished:
                self._reset_windows(previous)
                # Keep the judgment grid of the daemon that wrote the state (step start +
                # k intervals), strictly after now: a restart judges at the same times.
                interval = self.spec.analysis.interval
                looks = math.floor((now - previous.step_started_at) / interval) + 1
                self.next_judgment_at = previous.step_started_at + max(1, looks) * interval
            return not previous.finished
        if previous is not None:
            self._log.info(
                "rollout_superseded", old_revision=previous.revision, revision=self.revision
            )
        why = ""
        if previous is None and self.state is not None and not self.state.finished:
            # Our state was on the object and is gone: deleted and recreated (or edited away).
            self._log.warning("rollout_state_lost", step=self.state.step, restarting=True)
            why = f"{self.router.describe} no longer holds the rollout's state (recreated?)"
        if obj.inconsistency or obj.refusal:
            raise RouterError(f"cannot start: {obj.inconsistency or obj.refusal}")
        state, actions = machine.start(
            self.name, self.revision, self.spec.steps, obj.targets, now, why
        )
        self.steps.clear()
        self._reset_windows(state)
        self.next_judgment_at = now + self.spec.analysis.interval
        # A command left from before (set by hand on a finished rollout) is not for this one.
        stale = command_key(self.name) if command_key(self.name) in obj.annotations else None
        if stale is not None:
            self._log.warning("stale_command_dropped", command=obj.annotations[stale])
        await self._apply(obj, state, actions, {stale: None} if stale else {})
        return False

    async def _resume(self, now: float) -> None:
        """After an outage: read the object and its state again, and judge at once if the
        rollout goes on, so that the outage ends only when what failed works again (a
        write, not just a read)."""
        if await self._begin(now):
            await self._judge(now)

    def fold(self, cols: Columns, rows: IntArray) -> None:
        if self.active:
            self.steps.fold(cols, rows)

    def due(self, now: float) -> bool:
        return self.active and self.next_judgment_at is not None and now >= self.next_judgment_at

    async def tick(self, now: float) -> None:
        """Judge once if a judgment is due at ``now`` (in an outage: try the API again)."""
        if not self.due(now):
            return
        assert self.next_judgment_at is not None
        self.next_judgment_at += self.spec.analysis.interval
        if self.next_judgment_at <= now:  # skip judgments missed during a gap, but not this one
            self.next_judgment_at = now + self.spec.analysis.interval
        await self._guarded(self._resume if self.backoff.outage else self._judge, now)

    async def command(self, command: Command, now: float, reason: str) -> None:
        if self.state is None:
            return

        async def attempt(at: float) -> None:
            assert self.state is not None
            obj = await self.router.read()
            state, actions = machine.on_command(self.state, command, at, reason)
            await self._apply(obj, state, actions, {})

        await self._guarded(attempt, now)

    # -- internals --

    async def _judge(self, now: float) -> None:
        """One judgment attempt: a ConflictError means read again and judge again."""
        assert self.state is not None and self.windows is not None
        obj = await self.router.read()
        if await self._react(obj, now):
            return
        if self.state.phase != "Progressing":
            return
        guarded = warmup_verdict(self.spec, self.windows, now)
        verdict = guarded or judge(self.spec.checks, self.spec.analysis, await self._evidence(now))
        self.last_verdict = verdict
        for r in verdict.checks:
            self.judgments[(r.name, r.status)] += 1
        if self.on_judgment is not None:
            self.on_judgment(self, now, verdict)
        if guarded is not None:
            state, actions = machine.on_warmup_guard(self.state, verdict, now)
        else:
            state, actions = machine.on_verdict(self.state, verdict, self.spec.analysis, now)
        refusal = data_quality_refusal(
            actions, self.windows, self.spec.analysis, self.spec.model
        ) or await gates_refusal(
            self.gates,
            self.announcer,
            obj,
            state,
            actions,
            targets_after(state, actions, self.spec, self.limits),
        )
        if refusal is not None:
            if refusal != self._gate_refusal:  # say it once, not every interval
                self._gate_refusal = refusal
                state, actions = machine.hold(self.state, now, refusal)
                await self._try_apply(obj, state, actions, {})
            return
        self._gate_refusal = None
        await self._apply(obj, state, actions, {})

    async def _evidence(self, now: float) -> Evidence:
        """The rollout's evidence so far: the windows of every step (access-log checks pool
        them) and this step's answers to every Prometheus check's queries."""
        assert self.windows is not None
        queries = {
            check.name: await self.prometheus.outcomes(
                check, self.spec, self.windows.evidence_from, now
            )
            for check in self.spec.prometheus_checks
        }
        return Evidence(self.steps.all, queries)

    @property
    def unattributed(self) -> Counter[str]:
        """Lines of the rule's model over the rollout's steps that no group claims."""
        return self.steps.unattributed()

    async def _try_apply(
        self,
        obj: RoutedObject,
        state: RolloutState,
        actions: list[RolloutAction],
        extra: dict[str, str | None],
    ) -> None:
        try:
            await self._apply(obj, state, actions, extra)
        except ConflictError:
            self._log.warning("write_conflict", retrying=False)

    async def _apply(
        self,
        obj: RoutedObject,
        state: RolloutState,
        actions: list[RolloutAction],
        extra: dict[str, str | None],
    ) -> None:
        targets = targets_after(state, actions, self.spec, self.limits)
        if targets is not None:
            state = replace(state, applied=targets)
        previous = self.state
        changed = previous is None or state != previous or bool(extra)
        if changed and (unsettled := self.notifier.unsettled()) is not None:
            # the outbox rides on writes made anyway
            state = replace(state, notified_until=watermark(state, self.outbox, unsettled))
        if changed:
            await self.router.write(
                version=obj.version,
                targets=targets,
                annotations={annotation_key(self.name): state.dumps(), **extra},
            )
        self.state = state
        if (
            previous is None
            or state.step_started_at != previous.step_started_at
            or (state.phase == "Progressing" and previous.phase != "Progressing")
        ):
            self._reset_windows(state)
        for action in actions:
            if isinstance(action, Announce):
                notification = self.announcer.notification(obj, state, action.decision, targets)
                self.announced.append(notification)
                self.outbox.append(notification)
                await self.notifier.notify(notification)

    def _reset_windows(self, state: RolloutState) -> None:
        self.steps.reset([*state.strata_from, state.step_started_at])

    def _parse_state(self, raw: str) -> RolloutState | None:
        try:
            return RolloutState.loads(raw)
        except (ValueError, KeyError, TypeError) as exc:
            self._log.warning("state_annotation_unreadable", error=str(exc))
            return None

    async def aclose(self, timeout: float) -> None:
        """Flush notifications (bounded) and close gates."""
        await self.notifier.aclose(timeout)
        for gate in self.gates:
            await gate.aclose()
        self.prometheus.close()
