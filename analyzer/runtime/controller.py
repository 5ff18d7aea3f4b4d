"""One rule's rollout at the edge: windows in, judgments on time, actions out to the router.

A controller owns one rule. It adopts the state it finds in the object's annotation when the
revision matches (a finished rollout stays finished; a live one resumes its step), or starts a
new rollout. Every judgment reads the object first: targets that differ from what the daemon
last wrote are a human edit and pause the rollout; a command annotation is a human override.
Writes carry the version they were computed from; on a conflict the object is re-read and the
decision is made again from what is there.

Must not: read a clock (``now`` is passed in) or parse lines.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from analyzer.analysis.judge import Verdict, judge
from analyzer.analysis.kinds import Evidence
from analyzer.analysis.steps import RolloutWindows
from analyzer.analysis.windows import DEFAULT_RAW_LIMIT, METRICS, StepWindows
from analyzer.config import LoadedRule
from analyzer.events.columns import Columns
from analyzer.gates.base import Gate, GateKind
from analyzer.notify.base import Notification, Notifier
from analyzer.rollout import machine
from analyzer.rollout.guards import data_quality_refusal, targets_after, warmup_verdict
from analyzer.rollout.machine import COMMANDS, Announce, Command, RolloutAction
from analyzer.rollout.state import Decision, RolloutState, annotation_key, revision
from analyzer.rollout.weights import Target, WeightError, limits_for
from analyzer.routers.base import (
    ConflictError,
    RoutedObject,
    RouterError,
    TrafficRouter,
    command_key,
)
from analyzer.sources.metrics import MetricsSource, NoMetricsSource
from analyzer.stats.histogram import IntArray

log = structlog.get_logger("analyzer.controller")

JudgmentListener = Callable[["RolloutController", float, Verdict], None]
MAX_CONFLICT_RETRIES = 3


class RolloutController:
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
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.rule.spec
        self.name = loaded.name
        self.revision = revision(self.spec)
        self.router = router
        self.notifier = notifier
        self.dry_run = dry_run or self.spec.analysis.dry_run
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
        self.last_verdict: Verdict | None = None
        self.error: str | None = None
        self.on_judgment = on_judgment
        self.gates = list(gates)
        self.prometheus: MetricsSource = prometheus or NoMetricsSource()
        self._last_seen_version: str | None = None
        self.judgments: Counter[tuple[str, str]] = Counter()
        """Judgments by (check, status), for the daemon's metrics."""
        self._gate_refusal: str | None = None
        self._log = log.bind(rule=self.name, object=router.describe)

    @property
    def windows(self) -> StepWindows | None:
        """The current step's windows."""
        return self.steps.current

    @property
    def decisions(self) -> list[Decision]:
        return [n.decision for n in self.announced]

    @property
    def active(self) -> bool:
        return self.error is None and self.state is not None and not self.state.finished

    # -- life cycle --

    async def begin(self, now: float) -> None:
        """Adopt the rollout recorded on the object, or start a new one."""
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                await self._begin(now)
                return
            except ConflictError:
                self._log.warning("write_conflict", retrying=True)
            except (RouterError, WeightError) as exc:
                await self._fail(str(exc), now)
                return
        await self._fail("the object kept changing under every write; giving up", now)

    async def _begin(self, now: float) -> None:
        """One attempt of begin: a ConflictError means read again and retry."""
        obj = await self.router.read()
        raw = obj.annotations.get(annotation_key(self.name))
        previous = self._parse_state(raw) if raw else None
        if previous is not None and previous.revision == self.revision:
            self.state = previous
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
            return
        if previous is not None:
            self._log.info(
                "rollout_superseded", old_revision=previous.revision, revision=self.revision
            )
        state, actions = machine.start(self.name, self.revision, self.spec.steps, obj.targets, now)
        self.steps.clear()
        self._reset_windows(state)
        self.next_judgment_at = now + self.spec.analysis.interval
        await self._apply(obj, state, actions, {})

    def fold(self, cols: Columns, rows: IntArray) -> None:
        if self.active:
            self.steps.fold(cols, rows)

    def due(self, now: float) -> bool:
        return self.active and self.next_judgment_at is not None and now >= self.next_judgment_at

    async def tick(self, now: float) -> None:
        """Judge once if a judgment is due at ``now``."""
        if not self.due(now):
            return
        assert self.next_judgment_at is not None
        self.next_judgment_at += self.spec.analysis.interval
        if self.next_judgment_at <= now:  # skip judgments missed during a gap, but not this one
            self.next_judgment_at = now + self.spec.analysis.interval
        try:
            await self._judge(now)
        except (RouterError, WeightError) as exc:
            await self._fail(str(exc), now)

    async def command(self, command: Command, now: float, reason: str) -> None:
        if self.state is None:
            return
        for _ in range(MAX_CONFLICT_RETRIES):
            obj = await self.router.read()
            state, actions = machine.on_command(self.state, command, now, reason)
            try:
                await self._apply(obj, state, actions, {})
                return
            except ConflictError:
                continue
        await self._fail("the object kept changing under the override; giving up", now)

    # -- internals --

    async def _judge(self, now: float) -> None:
        assert self.state is not None and self.windows is not None
        for _ in range(MAX_CONFLICT_RETRIES):
            obj = await self.router.read()
            if await self._react(obj, now):
                return
            if self.state.phase != "Progressing":
                return
            guarded = warmup_verdict(self.spec, self.windows, now)
            verdict = guarded or judge(
                self.spec.checks, self.spec.analysis, await self._evidence(now)
            )
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
            ) or await self._ask_gates(obj, state, actions)
            if refusal is not None:
                if refusal != self._gate_refusal:  # say it once, not every interval
                    self._gate_refusal = refusal
                    state, actions = machine.hold(self.state, now, refusal)
                    await self._try_apply(obj, state, actions, {})
                return
            self._gate_refusal = None
            try:
                await self._apply(obj, state, actions, {})
                return
            except ConflictError:
                self._log.warning("write_conflict", retrying=True)
                continue
        await self._fail("the object kept changing under every write; giving up", now)

    async def _react(self, obj: RoutedObject, now: float) -> bool:
        """Humans first: a command annotation, or weights someone else changed (a pause).
        True when the object called for one of them and it was handled."""
        assert self.state is not None
        raw = obj.annotations.get(command_key(self.name))
        override = machine.parse_command(raw, command_key(self.name)) if raw else None
        if raw and override is None:
            self._log.warning("unknown_command", command=raw, known=list(COMMANDS))
        if override is not None:
            command, reason = override
            state, actions = machine.on_command(self.state, command, now, reason)
            await self._try_apply(obj, state, actions, {command_key(self.name): None})
            return True
        if (
            self.state.phase == "Progressing"
            and self.state.applied
            and (tuple(obj.targets) != self.state.applied)
        ):
            edit = ", ".join(f"{n}={w}" for n, w in obj.targets)
            state, actions = machine.on_command(
                self.state,
                "pause",
                now,
                f"weights changed outside canary-analyzer ({edit}); resume to continue",
            )
            await self._try_apply(obj, state, actions, {})
            return True
        return False

    async def on_object_change(self, obj: RoutedObject, now: float) -> None:
        """A watch event: react to human edits and commands at once, not at the next look."""
        if self.state is None or self.state.finished or self.error is not None:
            return
        if obj.version == self._last_seen_version:
            return
        self._last_seen_version = obj.version
        try:
            await self._react(obj, now)
        except (RouterError, WeightError) as exc:
            await self._fail(str(exc), now)

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

    async def _ask_gates(
        self, obj: RoutedObject, state: RolloutState, actions: list[RolloutAction]
    ) -> str | None:
        """None when every gate for this transition says yes, else why not."""
        kinds: dict[str, GateKind] = {"advance": "confirm-step", "promote": "confirm-promotion"}
        for action in actions:
            if not isinstance(action, Announce) or action.decision.action not in kinds:
                continue
            kind = kinds[action.decision.action]
            gates = [g for g in self.gates if g.kind == kind]
            if not gates:
                return None
            pending = self._notification(
                obj, state, action.decision, targets_after(state, actions, self.spec, self.limits)
            )
            for gate in gates:
                answer = await gate.confirm(pending)
                if not answer.open:
                    self._log.warning(
                        "gate_closed", gate=gate.name, kind=kind, reason=answer.reason
                    )
                    return answer.reason
        return None

    def _notification(
        self,
        obj: RoutedObject | None,
        state: RolloutState | None,
        decision: Decision,
        targets: tuple[Target, ...] | None,
    ) -> Notification:
        """The notification of ``decision``; without an object (an error before or while
        reading it) the weights are unknown and left empty."""
        before = tuple(obj.targets) if obj is not None else ()
        return Notification(
            rule=self.name,
            revision=self.revision,
            object=self.router.describe,
            model=self.spec.model,
            steps=tuple(self.spec.steps),
            phase=state.phase if state is not None else "Error",
            decision=decision,
            weights_before=before,
            weights_after=targets if targets is not None else before,
            dry_run=self.dry_run,
        )

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
                notification = self._notification(obj, state, action.decision, targets)
                self.announced.append(notification)
                await self.notifier.notify(notification)

    def _reset_windows(self, state: RolloutState) -> None:
        self.steps.reset([*state.strata_from, state.step_started_at])

    def _parse_state(self, raw: str) -> RolloutState | None:
        try:
            return RolloutState.loads(raw)
        except (ValueError, KeyError, TypeError) as exc:
            self._log.warning("state_annotation_unreadable", error=str(exc))
            return None

    async def _fail(self, message: str, now: float) -> None:
        """Stop acting on this rule and tell people: a rollout that cannot act is an incident."""
        self.error = message
        self._log.error("rollout_error", error=message)
        step = self.state.step if self.state else 0
        percent = self.state.canary_percent if self.state else 0
        decision = Decision(now, "error", message, step, percent)
        await self.notifier.notify(self._notification(None, self.state, decision, None))

    async def aclose(self, timeout: float) -> None:
        """Flush notifications (bounded) and close gates."""
        await self.notifier.aclose(timeout)
        for gate in self.gates:
            await gate.aclose()
        self.prometheus.close()
