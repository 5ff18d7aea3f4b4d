import pytest

from analyzer.analysis.checks import CheckResult
from analyzer.analysis.judge import Verdict
from analyzer.config import AnalysisSpec, RuleSpec
from analyzer.rollout import machine
from analyzer.rollout.machine import Announce, RestoreWeights, SetCanaryPercent
from analyzer.rollout.state import HISTORY_LIMIT, RolloutState, revision

ORIGINAL = (("a", 10), ("b", 10))
ANALYSIS = AnalysisSpec(min_step_duration=60, max_step_duration=600, failure_threshold=2)


def verdict(status: str) -> Verdict:
    check_status = status if status != "nodata" else "nodata"
    check = CheckResult(
        name="ttft",
        metric="ttft",
        status=check_status,  # type: ignore[arg-type]
        n_baseline=500,
        n_canary=500,
        p_value=0.5,
        reason="r",
    )
    return Verdict(status=status, checks=(check,))  # type: ignore[arg-type]


def started(steps: tuple[int, ...] = (10, 50, 100)) -> RolloutState:
    state, actions = machine.start("r", "rev", steps, ORIGINAL, 1000.0)
    assert actions[0] == SetCanaryPercent(steps[0])
    assert isinstance(actions[1], Announce) and actions[1].decision.action == "start"
    return state


def test_pass_advances_only_after_min_step_duration() -> None:
    s = started()
    s2, actions = machine.on_verdict(s, verdict("pass"), ANALYSIS, 1030.0)
    assert actions == [] and s2.step == 0
    s3, actions = machine.on_verdict(s2, verdict("pass"), ANALYSIS, 1060.0)
    assert s3.step == 1 and s3.step_started_at == 1060.0
    assert actions[0] == SetCanaryPercent(50)
    assert isinstance(actions[1], Announce) and actions[1].decision.action == "advance"
    assert actions[1].decision.checks[0]["name"] == "ttft"


def test_last_pass_promotes() -> None:
    s = started((10, 100))
    s2, actions = machine.on_verdict(s, verdict("pass"), ANALYSIS, 1100.0)
    assert s2.phase == "Succeeded" and s2.canary_percent == 100
    assert actions[0] == SetCanaryPercent(100)


def test_failure_threshold_rolls_back_even_before_min_duration() -> None:
    s = started()
    s, actions = machine.on_verdict(s, verdict("fail"), ANALYSIS, 1010.0)
    assert s.phase == "Progressing" and s.consecutive_failures == 1
    assert isinstance(actions[0], Announce) and actions[0].decision.action == "hold"
    s, actions = machine.on_verdict(s, verdict("fail"), ANALYSIS, 1020.0)
    assert s.phase == "RolledBack" and s.canary_percent == 0
    assert actions[0] == RestoreWeights()


def test_pass_resets_failures_and_inconclusive_is_neutral() -> None:
    s = started()
    s, _ = machine.on_verdict(s, verdict("fail"), ANALYSIS, 1010.0)
    s, _ = machine.on_verdict(s, verdict("inconclusive"), ANALYSIS, 1020.0)
    assert s.consecutive_failures == 1
    s, _ = machine.on_verdict(s, verdict("pass"), ANALYSIS, 1030.0)
    assert s.consecutive_failures == 0
    s, _ = machine.on_verdict(s, verdict("fail"), ANALYSIS, 1040.0)
    assert s.phase == "Progressing"


@pytest.mark.parametrize("status", ["inconclusive", "nodata"])
def test_missing_data_never_promotes(status: str) -> None:
    s = started()
    for t in range(1010, 5000, 10):
        s, _ = machine.on_verdict(s, verdict(status), ANALYSIS, float(t))
    assert s.phase == "Progressing" and s.step == 0


def test_on_inconclusive_hold_is_said_once() -> None:
    s = started()
    s, actions = machine.on_verdict(s, verdict("nodata"), ANALYSIS, 1600.0)
    assert [a.decision.action for a in actions if isinstance(a, Announce)] == ["hold"]
    s, actions = machine.on_verdict(s, verdict("nodata"), ANALYSIS, 1610.0)
    assert actions == [] and s.phase == "Progressing"


@pytest.mark.parametrize(("policy", "phase"), [("rollback", "RolledBack"), ("pause", "Paused")])
def test_on_inconclusive_rollback_and_pause(policy: str, phase: str) -> None:
    analysis = ANALYSIS.model_copy(update={"on_inconclusive": policy})
    s = started()
    s, _ = machine.on_verdict(s, verdict("inconclusive"), analysis, 1599.0)
    assert s.phase == "Progressing"
    s, _ = machine.on_verdict(s, verdict("inconclusive"), analysis, 1600.0)
    assert s.phase == phase


def test_overrides() -> None:
    s = started()
    paused, actions = machine.on_command(s, "pause", 1010.0, "by alice")
    assert paused.phase == "Paused" and "alice" in paused.message
    assert machine.on_verdict(paused, verdict("fail"), ANALYSIS, 1020.0) == (paused, [])
    assert machine.on_command(paused, "pause", 1021.0) == (paused, [])
    resumed, actions = machine.on_command(paused, "resume", 1030.0)
    assert resumed.phase == "Progressing" and resumed.step_started_at == 1030.0
    assert actions[0] == SetCanaryPercent(10)
    aborted, actions = machine.on_command(resumed, "abort", 1040.0)
    assert aborted.phase == "RolledBack" and actions[0] == RestoreWeights()
    promoted, actions = machine.on_command(s, "promote", 1040.0)
    assert promoted.phase == "Succeeded" and actions[0] == SetCanaryPercent(100)
    for finished in (aborted, promoted):
        for cmd in ("pause", "resume", "abort", "promote"):
            assert machine.on_command(finished, cmd, 2000.0) == (finished, [])  # type: ignore[arg-type]
    assert machine.on_command(s, "resume", 1050.0) == (s, [])


def test_single_step_of_100_promotes_at_once() -> None:
    state, actions = machine.start("r", "rev", (100,), ORIGINAL, 5.0)
    assert state.phase == "Succeeded" and actions[0] == SetCanaryPercent(100)


def test_state_round_trips_through_json_and_history_is_bounded() -> None:
    s = started()
    for i in range(HISTORY_LIMIT + 5):
        s, _ = machine.on_command(s, "pause" if i % 2 == 0 else "resume", 1000.0 + i)
    assert len(s.history) == HISTORY_LIMIT
    again = RolloutState.loads(s.dumps())
    assert again == s
    with pytest.raises(ValueError):
        RolloutState.loads('{"v": 99}')


def test_revision_tracks_identity_not_knobs() -> None:
    base = {
        "target": {
            "kind": "InferenceModel",
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "name": "im",
        },
        "model": "m",
        "baseline": ["a"],
        "canary": ["b"],
        "steps": [10, 100],
    }
    r1 = revision(RuleSpec.model_validate(base))
    r2 = revision(RuleSpec.model_validate({**base, "analysis": {"minSamples": 50}}))
    r3 = revision(RuleSpec.model_validate({**base, "steps": [20, 100]}))
    assert r1 == r2 != r3
