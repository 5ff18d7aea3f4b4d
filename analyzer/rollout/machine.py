"""The rollout state machine: (state, input, now) -> (new state, actions). Pure.

Inputs are a verdict from the judge or a human command (pause, resume, abort, promote). Actions
are what the edges must do: set the canary share of a step, restore the original weights, and
announce a decision. The machine never reads a clock: ``now`` is event time in replay and in
live runs alike, which is why a replay reaches the decisions a live run would.

Rules, in order of precedence:
- A rollback wins: ``failure_threshold`` consecutive failing verdicts (harm shown) roll back, at
  any time in the step (no waiting for ``minStepDuration``), and abort rolls back from any live
  phase. A rollback sends the canary group to 0% (the edge restores the pre-rollout weights
  exactly when the canary had no traffic before).
- Promotion to 100% needs a passing verdict (every check shown within its tolerance, on the
  evidence pooled over the steps) after ``minStepDuration``.
- An intermediate step advances after ``minStepDuration`` on a pass, or, with ``advanceOn:
  no-harm`` (the default), on no harm shown with ``minSamples`` per group and no check
  looking worse than its tolerance (``Verdict.no_harm``).
- A pass (or an advance) resets the failure count; other verdicts neither count nor reset.
- Past ``maxStepDuration`` without a pass, ``onInconclusive`` applies (hold: wait on, said once;
  rollback; pause). Missing data never promotes.
- Finished rollouts (Succeeded, RolledBack) ignore every input.

Must not: do I/O, compute weights (rollout/weights.py) or judge (analysis/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from analyzer.analysis.judge import Verdict
from analyzer.config import AnalysisSpec
from analyzer.rollout.state import Decision, RolloutState
from analyzer.rollout.weights import Target

Command = Literal["pause", "resume", "abort", "promote"]
COMMANDS: tuple[Command, ...] = ("pause", "resume", "abort", "promote")


def parse_command(raw: str, where: str) -> tuple[Command, str] | None:
    """A command annotation's value (``pause: load test at 14:00``) as (command, reason); None
    for an unknown command. ``where`` names the annotation in the default reason."""
    word, _, note = raw.partition(":")
    word = word.strip().lower()
    for command in COMMANDS:
        if word == command:
            return command, note.strip() or f"annotation {where}={raw}"
    return None


@dataclass(frozen=True)
class SetCanaryPercent:
    percent: int


@dataclass(frozen=True)
class RestoreWeights:
    pass


@dataclass(frozen=True)
class Announce:
    decision: Decision


RolloutAction = SetCanaryPercent | RestoreWeights | Announce
Transition = tuple[RolloutState, list[RolloutAction]]


def start(
    rule: str,
    revision: str,
    steps: Sequence[int],
    original: Sequence[Target],
    now: float,
    why: str = "",
) -> Transition:
    """A new rollout at its first step (``why``: said in the reason, when it is not the
    rollout's first start)."""
    state = RolloutState(
        rule=rule,
        revision=revision,
        phase="Progressing",
        steps=tuple(steps),
        step=0,
        step_started_at=now,
        started_at=now,
        original=tuple(original),
    )
    if steps[0] == 100:
        return _promote(state, now, "the only step is 100%: promoted without analysis")
    reason = f"rollout started at {steps[0]}% canary" + (f": {why}" if why else "")
    decision = Decision(now, "start", reason, 0, steps[0])
    state = state.with_decision(decision, message=decision.reason)
    return state, [SetCanaryPercent(steps[0]), Announce(decision)]


def _promote(
    state: RolloutState, now: float, reason: str, checks: Verdict | None = None
) -> Transition:
    last = len(state.steps) - 1
    decision = Decision(now, "promote", reason, last, 100, checks.checks_json() if checks else ())
    new = state.with_decision(
        decision,
        phase="Succeeded",
        step=last,
        step_started_at=now,
        consecutive_failures=0,
        message=reason,
    )
    return new, [SetCanaryPercent(100), Announce(decision)]


def _rollback(
    state: RolloutState, now: float, reason: str, checks: Verdict | None = None
) -> Transition:
    decision = Decision(
        now, "rollback", reason, state.step, 0, checks.checks_json() if checks else ()
    )
    new = state.with_decision(decision, phase="RolledBack", message=reason)
    return new, [RestoreWeights(), Announce(decision)]


def _pause(
    state: RolloutState, now: float, reason: str, checks: Verdict | None = None
) -> Transition:
    decision = Decision(
        now,
        "pause",
        reason,
        state.step,
        state.canary_percent,
        checks.checks_json() if checks else (),
    )
    return state.with_decision(decision, phase="Paused", message=reason), [Announce(decision)]


def on_verdict(
    state: RolloutState, verdict: Verdict, analysis: AnalysisSpec, now: float
) -> Transition:
    if state.phase != "Progressing":
        return state, []
    elapsed = now - state.step_started_at
    percent = state.canary_percent
    if verdict.status == "fail":
        failures = state.consecutive_failures + 1
        if failures >= analysis.failure_threshold:
            reason = (
                f"{failures} consecutive failing judgments at {percent}% canary: {verdict.summary}"
            )
            return _rollback(replace(state, consecutive_failures=failures), now, reason, verdict)
        reason = (
            f"failing judgment {failures}/{analysis.failure_threshold} at {percent}% canary: "
            f"{verdict.summary}"
        )
        decision = Decision(now, "hold", reason, state.step, percent, verdict.checks_json())
        return state.with_decision(decision, consecutive_failures=failures, message=reason), [
            Announce(decision)
        ]
    nxt = state.step + 1
    last = state.steps[nxt] == 100
    may_advance = not last and analysis.advance_on == "no-harm" and verdict.no_harm
    if verdict.status == "pass" or may_advance:
        if verdict.status == "pass":
            state = replace(state, consecutive_failures=0)
        if elapsed < analysis.min_step_duration:
            return state, []
        state = replace(state, consecutive_failures=0)
        if last:
            return _promote(
                state,
                now,
                f"every check shown within tolerance at {percent}% canary after {elapsed:.0f}s: "
                "promoted",
                verdict,
            )
        shown = (
            "every check shown within tolerance"
            if verdict.status == "pass"
            else "no harm shown with enough samples"
        )
        reason = (
            f"{shown} at {percent}% canary for {elapsed:.0f}s: advancing to {state.steps[nxt]}%"
        )
        decision = Decision(now, "advance", reason, nxt, state.steps[nxt], verdict.checks_json())
        new = state.with_decision(
            decision,
            step=nxt,
            step_started_at=now,
            overdue_reported=False,
            message=reason,
            strata_from=(*state.strata_from, state.step_started_at),
        )
        return new, [SetCanaryPercent(state.steps[nxt]), Announce(decision)]
    if elapsed < analysis.max_step_duration:
        return state, []
    why = f"not shown within tolerance after {elapsed:.0f}s at {percent}% canary: {verdict.summary}"
    if analysis.on_inconclusive == "rollback":
        return _rollback(state, now, why, verdict)
    if analysis.on_inconclusive == "pause":
        return _pause(state, now, why, verdict)
    if state.overdue_reported:
        return state, []
    decision = Decision(now, "hold", why + " (holding)", state.step, percent, verdict.checks_json())
    return state.with_decision(decision, overdue_reported=True, message=decision.reason), [
        Announce(decision)
    ]


def on_warmup_guard(state: RolloutState, verdict: Verdict, now: float) -> Transition:
    """A check shown far beyond its baseline during warm-up: roll back at once."""
    if state.phase != "Progressing":
        return state, []
    reason = f"warm-up guard at {state.canary_percent}% canary: {verdict.summary}"
    return _rollback(state, now, reason, verdict)


def hold(state: RolloutState, now: float, reason: str) -> Transition:
    """Stay where the rollout is, and say why (e.g. a gate refused to let it advance)."""
    decision = Decision(now, "hold", reason, state.step, state.canary_percent)
    return state.with_decision(decision, message=reason), [Announce(decision)]


def on_command(state: RolloutState, command: Command, now: float, reason: str = "") -> Transition:
    """A human override. Finished rollouts and no-op commands change nothing."""
    who = reason or f"{command} requested"
    if state.finished:
        return state, []
    if command == "abort":
        return _rollback(state, now, f"aborted: {who}")
    if command == "promote":
        return _promote(state, now, f"promoted by hand: {who}")
    if command == "pause":
        if state.phase == "Paused":
            return state, []
        return _pause(state, now, f"paused: {who}")
    if state.phase != "Paused":
        return state, []
    percent = state.canary_percent
    decision = Decision(now, "resume", f"resumed at {percent}% canary: {who}", state.step, percent)
    new = state.with_decision(
        decision,
        phase="Progressing",
        step_started_at=now,
        consecutive_failures=0,
        overdue_reported=False,
        message=decision.reason,
        strata_from=(*state.strata_from, state.step_started_at),
    )
    return new, [SetCanaryPercent(percent), Announce(decision)]
