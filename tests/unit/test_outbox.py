"""The notification outbox in the state: the watermark, what an adopter sends again, and a
state written before the outbox (its decisions count as sent)."""

from __future__ import annotations

from dataclasses import replace

from analyzer.rollout.state import RolloutState
from analyzer.runtime.outbox import to_resend, watermark
from tests.integration.test_notify import notification

START, ADVANCE, PROMOTE = (
    notification("start", 100.0),
    notification("advance", 160.0),
    notification("promote", 220.0),
)


def _state(notified_until: float = 0.0) -> RolloutState:
    return RolloutState(
        rule="r",
        revision="x",
        phase="Progressing",
        steps=(10, 100),
        step=0,
        step_started_at=100.0,
        started_at=100.0,
        original=(("a", 1),),
        history=tuple(n.decision for n in (START, ADVANCE, PROMOTE)),
        notified_until=notified_until,
    )


def test_the_watermark_stops_at_the_first_unsettled_notification_and_never_goes_back() -> None:
    sent = [START, ADVANCE, PROMOTE]
    assert watermark(_state(), sent, frozenset()) == 220.0
    assert watermark(_state(), sent, frozenset({ADVANCE.key})) == 100.0
    assert watermark(_state(), sent, frozenset({START.key, PROMOTE.key})) == 0.0
    assert watermark(_state(160.0), sent, frozenset({START.key})) == 160.0  # not moved back


def test_an_adopter_sends_what_may_be_lost_and_not_what_it_queued_itself() -> None:
    assert [d.action for d in to_resend(_state(100.0), [])] == ["advance", "promote"]
    assert [d.action for d in to_resend(_state(100.0), [ADVANCE])] == ["promote"]
    assert to_resend(_state(220.0), []) == []


def test_the_watermark_survives_the_annotation_and_old_states_count_as_sent() -> None:
    state = _state(160.0)
    assert RolloutState.loads(state.dumps()).notified_until == 160.0
    legacy = state.to_json()
    del legacy["notifiedUntil"]
    assert RolloutState.from_json(legacy).notified_until == 220.0
    assert RolloutState.from_json({**legacy, "history": []}).notified_until == 0.0
    assert replace(state, notified_until=0.0) != state
