import numpy as np
import pytest

from analyzer.analysis.checks import evaluate
from analyzer.analysis.judge import judge, settle
from analyzer.analysis.windows import StepWindows
from analyzer.config import AnalysisSpec, CheckSpec
from analyzer.events import AccessEvent

TTFT = CheckSpec(name="ttft", metric="ttft", test="mann-whitney", tolerance=0.1, alpha=0.01)
ERRORS = CheckSpec(
    name="errors", metric="error_rate", test="proportion", tolerance=0.01, alpha=0.01
)


def windows(raw_limit: int = 1000, started_at: float = 0.0) -> StepWindows:
    return StepWindows(frozenset({"b1", "b2"}), frozenset({"c1"}), started_at, raw_limit=raw_limit)


def feed(
    w: StepWindows,
    n: int,
    target: str,
    factor: float = 1.0,
    error_rate: float = 0.0,
    seed: int = 0,
    t0: float = 1.0,
) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        err = rng.random() < error_rate
        w.observe(
            AccessEvent(
                timestamp=t0 + i * 0.01,
                model="m",
                target=target,
                status=503 if err else 200,
                ttft=float(rng.lognormal(-1.4, 0.5)) * factor,
                is_error=err,
            )
        )


def test_latency_comes_from_successes_only_and_step_start_is_respected() -> None:
    w = windows(started_at=10.0)
    feed(w, 50, "b1", t0=0.0)  # the first 10 s of these precede the step
    feed(w, 100, "c1", error_rate=0.5, t0=20.0)
    feed(w, 10, "other", t0=20.0)
    assert w.before_step == 50
    w.flush()
    assert w.canary.requests == 100
    assert w.canary.metrics["ttft"].count == 100 - w.canary.errors
    assert w.unrouted == {"other": 10}


def test_merged_partial_windows_equal_one_window() -> None:
    whole, part1, part2 = windows(raw_limit=50), windows(raw_limit=50), windows(raw_limit=50)
    feed(whole, 300, "b1", seed=1)
    feed(whole, 40, "c1", seed=2)
    feed(part1, 300, "b1", seed=1)
    feed(part2, 40, "c1", seed=2)
    part1.merge(part2)
    for g in ("baseline", "canary"):
        a, b = getattr(whole, g), getattr(part1, g)
        a.flush()
        assert a.requests == b.requests and a.errors == b.errors
        assert np.array_equal(
            a.metrics["ttft"].histogram.counts, b.metrics["ttft"].histogram.counts
        )
    assert evaluate(TTFT, whole, 10).p_value == pytest.approx(evaluate(TTFT, part1, 10).p_value)


def test_raw_path_for_small_and_binned_for_large() -> None:
    w = windows(raw_limit=1000)
    feed(w, 500, "b1", seed=1)
    feed(w, 300, "c1", seed=2)
    assert evaluate(TTFT, w, 100).method == "sequential/asymptotic"
    feed(w, 1000, "b2", seed=3)
    assert evaluate(TTFT, w, 100).method == "sequential/binned"
    fixed = TTFT.model_copy(update={"mode": "fixed"})
    assert evaluate(fixed, w, 100).method == "binned"


def test_statuses_before_the_test() -> None:
    w = windows()
    assert evaluate(TTFT, w, 100).status == "nodata"
    feed(w, 150, "b1")
    feed(w, 10, "c1")
    r = evaluate(TTFT, w, 100)
    assert r.status == "inconclusive" and r.p_value is None and "too few" in r.reason
    assert r.effect is not None  # the estimate is shown even before it counts
    # From 20 samples a sequential check is tested, but below minSamples it can only fail.
    feed(w, 30, "c1", seed=5)
    early = evaluate(TTFT, w, 100)
    assert early.p_value is not None and not early.may_pass
    assert settle([early], AnalysisSpec()).status == "inconclusive"
    slow = windows()
    feed(slow, 150, "b1")
    feed(slow, 40, "c1", factor=3.0, seed=5)
    assert settle([evaluate(TTFT, slow, 100)], AnalysisSpec()).status == "fail"
    fixed = evaluate(TTFT.model_copy(update={"mode": "fixed"}), slow, 100)
    assert fixed.p_value is None and fixed.status == "inconclusive"


def test_verdicts() -> None:
    w = windows()
    feed(w, 2000, "b1", seed=1)
    feed(w, 400, "c1", factor=1.5, seed=2)
    v = judge([TTFT, ERRORS], AnalysisSpec(min_samples=200), w)
    assert v.status == "fail"
    assert [c.status for c in v.checks] == ["fail", "pass"]
    assert "exceeds" in v.summary
    dry = judge([TTFT.model_copy(update={"dry_run": True}), ERRORS], AnalysisSpec(), w)
    assert dry.status == "pass" and dry.checks[0].status == "fail"
    healthy = windows()
    feed(healthy, 2000, "b1", seed=1)
    feed(healthy, 400, "c1", seed=2)
    assert judge([TTFT, ERRORS], AnalysisSpec(), healthy).status == "pass"
    assert judge([TTFT, ERRORS], AnalysisSpec(), windows()).status == "nodata"


def test_holm_correction_can_save_a_marginal_check() -> None:
    w = windows()
    feed(w, 500, "b1")
    feed(w, 500, "c1")
    raw = [evaluate(TTFT, w, 10), evaluate(ERRORS, w, 10)]
    marginal = raw[0].__class__(**{**raw[0].__dict__, "p_value": 0.008})
    other = raw[1].__class__(**{**raw[1].__dict__, "p_value": 0.5})
    assert settle([marginal, other], AnalysisSpec(correction="none")).status == "fail"
    assert settle([marginal, other], AnalysisSpec(correction="holm")).status == "pass"


def test_positions_make_folding_idempotent() -> None:
    w = windows()
    events = [
        AccessEvent(timestamp=10.0 + i, model="m", target="c1", status=200, ttft=0.2)
        for i in range(5)
    ]
    for offset, e in enumerate(events):
        w.observe(e, ("p0", offset))
    for offset, e in enumerate(events):  # the same records read again (a rewind)
        w.observe(e, ("p0", offset))
    assert w.canary.requests == 5 and w.duplicates == 5
    # The partition's log was recreated: offsets start over, but the records are newer.
    w.observe(AccessEvent(timestamp=20.0, model="m", target="c1", status=200, ttft=0.2), ("p0", 0))
    assert w.canary.requests == 6
    w.observe(events[0], ("p1", 0))  # another partition has its own watermark
    assert w.canary.requests == 7
