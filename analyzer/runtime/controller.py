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

from analyzer.analysis import promchecks
from analyzer.analysis.checks import CheckResult, evaluate, guarded_tolerance
from analyzer.analysis.judge import Verdict, settle
from analyzer.analysis.windows import DEFAULT_RAW_LIMIT, METRICS, StepWindows
from analyzer.config import CheckSpec, LoadedRule, PrometheusCheckSpec
from analyzer.events.columns import Columns
from analyzer.gates.base import Gate, GateKind
from analyzer.notify.base import Notification, Notifier
from analyzer.rollout import machine
from analyzer.rollout.machine import (
    COMMANDS,
    Announce,
    Command,
    RestoreWeights,
    RolloutAction,
    SetCanaryPercent,
)
from analyzer.rollout.state import Decision, RolloutState, annotation_key, revision
from analyzer.rollout.weights import Target, WeightError, canary_share, limits_for, split
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
        self.raw_limit = raw_limit
        self.limits = limits_for(self.spec.target.kind, self.spec.target.api_version)
        self.state: RolloutState | None = None
        self.windows: StepWindows | None = None
        self.strata: list[StepWindows] = []
        """The rollout's earlier steps (closed), pooled with the current one as evidence."""
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
        self.strata, self.windows = [], None
        self._reset_windows(state)
        self.next_judgment_at = now + self.spec.analysis.interval
        await self._apply(obj, state, actions, {})

    def fold(self, cols: Columns, rows: IntArray) -> None:
        """Each row to the window of its time: an earlier step's, or the current one (which
        also counts what precedes the rollout's evidence)."""
        if self.windows is None or not self.active:
            return
        if not self.strata:
            self.windows.fold(cols, rows)
            return
        ts = cols.timestamp[rows]
        earlier = (ts >= self.strata[0].started_at) & (ts < self.windows.started_at)
        for w in self.strata:
            assert w.ends_at is not None
            mine = rows[earlier & (ts >= w.started_at) & (ts < w.ends_at)]
            if mine.size:
                w.fold(cols, mine)
        self.windows.fold(cols, rows[~earlier])

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
            guarded = self._warmup_guard(now)
            verdict = guarded or settle(await self._check_results(now), self.spec.analysis)
            self.last_verdict = verdict
            for r in verdict.checks:
                self.judgments[(r.name, r.status)] += 1
            if self.on_judgment is not None:
                self.on_judgment(self, now, verdict)
            if guarded is not None:
                state, actions = machine.on_warmup_guard(self.state, verdict, now)
            else:
                state, actions = machine.on_verdict(self.state, verdict, self.spec.analysis, now)
            refusal = self._data_quality(actions) or await self._ask_gates(obj, state, actions)
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
        override = self._override(obj)
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

    async def _check_results(self, now: float) -> list[CheckResult]:
        """Every check of the rule, in the rule's order, on the rollout's evidence so far
        (access-log checks pool the earlier steps; Prometheus queries cover this step)."""
        assert self.windows is not None
        minimum = self.spec.analysis.min_samples
        strata = [*self.strata, self.windows]
        results = []
        for check in self.spec.checks:
            if isinstance(check, PrometheusCheckSpec):
                outcomes = await self.prometheus.outcomes(
                    check, self.spec, self.windows.evidence_from, now
                )
                results.append(promchecks.evaluate(check, outcomes, minimum))
            else:
                results.append(evaluate(check, strata, minimum))
        return results

    def _warmup_guard(self, now: float) -> Verdict | None:
        """During warm-up, a failing verdict when a check is shown far beyond the baseline."""
        guard = self.spec.analysis.warmup_guard
        w = self.windows
        if guard is None or w is None or now >= w.evidence_from:
            return None
        view = w.warm_view()
        checks = [
            c.model_copy(update={"tolerance": guarded_tolerance(c, guard), "min_samples": 1})
            for c in self.spec.checks
            if isinstance(c, CheckSpec)
        ]
        verdict = settle([evaluate(c, [view], 1) for c in checks], self.spec.analysis)
        return verdict if verdict.status == "fail" else None

    @property
    def unattributed(self) -> Counter[str]:
        """Lines of the rule's model over the rollout's steps that no group claims, by the
        adapter they named ("" for none)."""
        total: Counter[str] = Counter()
        for w in [*self.strata, *([self.windows] if self.windows else [])]:
            total.update(w.unrouted)
        return total

    def _data_quality(self, actions: list[RolloutAction]) -> str | None:
        """Why the step may not advance on the data it read, if it may not."""
        w = self.windows
        moving = any(
            isinstance(a, Announce) and a.decision.action in ("advance", "promote") for a in actions
        )
        if not moving or w is None:
            return None
        share = w.unattributed_share()
        limit = self.spec.analysis.max_unattributed
        if share <= limit:
            return None
        named = ", ".join(f"{a or '(none)'}: {n}" for a, n in w.unrouted.most_common(5))
        return (
            f"data quality: {share:.1%} of this step's {self.spec.model} lines name no adapter "
            f"of either group (limit {limit:.0%}; {named}); fix the access log's adapter field "
            "or the rule's groups"
        )

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
            pending = self._notification(obj, state, action.decision, self._targets(state, actions))
            for gate in gates:
                answer = await gate.confirm(pending)
                if not answer.open:
                    self._log.warning(
                        "gate_closed", gate=gate.name, kind=kind, reason=answer.reason
                    )
                    return answer.reason
        return None

    def _targets(
        self, state: RolloutState, actions: list[RolloutAction]
    ) -> tuple[Target, ...] | None:
        targets: tuple[Target, ...] | None = None
        for action in actions:
            if isinstance(action, SetCanaryPercent):
                targets = tuple(
                    split(
                        state.original,
                        self.spec.baseline,
                        self.spec.canary,
                        action.percent,
                        self.limits,
                    )
                )
            elif isinstance(action, RestoreWeights):
                targets = self._rolled_back(state)
        return targets

    def _rolled_back(self, state: RolloutState) -> tuple[Target, ...]:
        """The canary at 0%: the exact pre-rollout weights when it had no traffic then, else
        its targets at the object's minimum with the baseline keeping its proportions."""
        if canary_share(state.original, self.spec.canary) == 0:
            return state.original
        return tuple(split(state.original, self.spec.baseline, self.spec.canary, 0, self.limits))

    def _notification(
        self,
        obj: RoutedObject,
        state: RolloutState,
        decision: Decision,
        targets: tuple[Target, ...] | None,
    ) -> Notification:
        return Notification(
            rule=self.name,
            revision=self.revision,
            object=self.router.describe,
            model=self.spec.model,
            steps=tuple(self.spec.steps),
            phase=state.phase,
            decision=decision,
            weights_before=tuple(obj.targets),
            weights_after=targets if targets is not None else tuple(obj.targets),
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

    def _override(self, obj: RoutedObject) -> tuple[Command, str] | None:
        raw = obj.annotations.get(command_key(self.name))
        if raw is None:
            return None
        word, _, note = raw.partition(":")
        word = word.strip().lower()
        if word not in COMMANDS:
            self._log.warning("unknown_command", command=raw, known=list(COMMANDS))
            return None
        return word, note.strip() or f"annotation {command_key(self.name)}={raw}"

    async def _apply(
        self,
        obj: RoutedObject,
        state: RolloutState,
        actions: list[RolloutAction],
        extra: dict[str, str | None],
    ) -> None:
        targets = self._targets(state, actions)
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
        """Windows for each of the state's evidence windows and its current step, keeping
        those already built (a restart builds them all and the log is read again)."""
        built = {w.started_at: w for w in self.strata}
        if self.windows is not None:
            built[self.windows.started_at] = self.windows
        starts = [*state.strata_from, state.step_started_at]
        windows = [built.get(t) or self._new_windows(t) for t in starts]
        for w, end in zip(windows, [*starts[1:], None], strict=True):
            w.ends_at = end
        self.strata, self.windows = windows[:-1], windows[-1]

    def _new_windows(self, started_at: float) -> StepWindows:
        read = {c.metric for c in self.spec.checks if isinstance(c, CheckSpec)}
        return StepWindows(
            frozenset(self.spec.baseline),
            frozenset(self.spec.canary),
            started_at,
            raw_limit=self.raw_limit,
            metrics=tuple(m for m in METRICS if m in read),
            warmup=self.spec.analysis.warmup,
        )

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
        phase = self.state.phase if self.state else "Error"
        decision = Decision(now, "error", message, step, percent)
        await self.notifier.notify(
            Notification(
                rule=self.name,
                revision=self.revision,
                object=self.router.describe,
                model=self.spec.model,
                steps=tuple(self.spec.steps),
                phase=phase,
                decision=decision,
                weights_before=(),
                weights_after=(),
                dry_run=self.dry_run,
            )
        )

    async def aclose(self, timeout: float) -> None:
        """Flush notifications (bounded) and close gates."""
        await self.notifier.aclose(timeout)
        for gate in self.gates:
            await gate.aclose()
        self.prometheus.close()
