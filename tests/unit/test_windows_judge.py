import numpy as np
import pytest

from analyzer.analysis.checks import evaluate
from analyzer.analysis.judge import judge, settle
from analyzer.analysis.kinds import Evidence
from analyzer.analysis.windows import StepWindows
from analyzer.config import AnalysisSpec, CheckSpec
from analyzer.events.access import AccessEvent
from analyzer.events.columns import Columns

TTFT = CheckSpec(name="ttft", metric="ttft", test="mann-whitney", tolerance=0.1, alpha=0.01)
ERRORS = CheckSpec(
    name="errors", metric="error_rate", test="proportion", tolerance=0.01, alpha=0.01
)


def windows(raw_limit: int = 1000, started_at: float = 0.0) -> StepWindows:
    return StepWindows(frozenset({"b1", "b2"}), frozenset({"c1"}), started_at, raw_limit=raw_limit)


def fold(w: StepWindows, events: list[AccessEvent], at: tuple[str, int] | None = None) -> None:
    """Events into the windows as the engine folds them: one column batch (positioned at
    partition ``at[0]`` from offset ``at[1]`` on, when given)."""
    cols = Columns.from_events(list(range(len(events))), events)
    if at is not None:
        cols.locate(at[0], np.arange(at[1], at[1] + len(events)))
    w.fold(cols, np.arange(len(events)))


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
    events = []
    for i in range(n):
        err = rng.random() < error_rate
        events.append(
            AccessEvent(
                timestamp=t0 + i * 0.01,
                model="m",
                target=target,
                status=503 if err else 200,
                ttft=float(rng.lognormal(-1.4, 0.5)) * factor,
                is_error=err,
            )
        )
    fold(w, events)


def test_latency_comes_from_successes_only_and_step_start_is_respected() -> None:
    w = windows(started_at=10.0)
    feed(w, 50, "b1", t0=0.0)  # the first 10 s of these precede the step
    feed(w, 100, "c1", error_rate=0.5, t0=20.0)
    feed(w, 10, "other", t0=20.0)
    assert w.before_step == 50
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
        assert a.requests == b.requests and a.errors == b.errors
        assert np.array_equal(
            a.metrics["ttft"].histogram.counts, b.metrics["ttft"].histogram.counts
        )
    assert evaluate(TTFT, [whole], 10).p_value == pytest.approx(evaluate(TTFT, [part1], 10).p_value)


def test_raw_path_for_small_and_binned_for_large() -> None:
    w = windows(raw_limit=1000)
    feed(w, 500, "b1", seed=1)
    feed(w, 300, "c1", seed=2)
    assert evaluate(TTFT, [w], 100).method == "sequential/asymptotic"
    feed(w, 1000, "b2", seed=3)
    assert evaluate(TTFT, [w], 100).method == "sequential/binned"
    fixed = TTFT.model_copy(update={"mode": "fixed"})
    assert evaluate(fixed, [w], 100).method == "binned"


def test_statuses_before_the_test() -> None:
    w = windows()
    assert evaluate(TTFT, [w], 100).status == "nodata"
    feed(w, 150, "b1")
    feed(w, 10, "c1")
    r = evaluate(TTFT, [w], 100)
    assert r.status == "inconclusive" and r.p_value is None and "too few" in r.reason
    # From 20 samples a sequential check is tested, but below minSamples it can only fail.
    feed(w, 30, "c1", seed=5)
    early = evaluate(TTFT, [w], 100)
    assert early.p_value is not None and not early.ready and early.effect is not None
    assert settle([early], AnalysisSpec()).status == "inconclusive"
    slow = windows()
    feed(slow, 150, "b1")
    feed(slow, 40, "c1", factor=3.0, seed=5)
    assert settle([evaluate(TTFT, [slow], 100)], AnalysisSpec()).status == "fail"
    fixed = evaluate(TTFT.model_copy(update={"mode": "fixed"}), [slow], 100)
    assert fixed.p_value is None and fixed.status == "inconclusive"


def test_three_outcomes_read_from_the_interval_shown() -> None:
    """Fail: the interval is beyond the tolerance; pass: inside it; else inconclusive."""
    slow, healthy, marginal = windows(), windows(), windows()
    for w, factor in ((slow, 1.5), (healthy, 1.0), (marginal, 1.1)):
        feed(w, 5000, "b1", seed=1)
        feed(w, 1500, "c1", factor=factor, seed=2)
    v = judge([TTFT], AnalysisSpec(min_samples=200), Evidence([slow]))
    assert v.status == "fail" and v.checks[0].ci is not None and v.checks[0].ci[0] > 1.1
    assert "beyond tolerance 1.100" in v.summary
    ok = judge([TTFT], AnalysisSpec(min_samples=200), Evidence([healthy])).checks[0]
    assert ok.status == "pass" and ok.ci is not None and ok.ci[1] < 1.1
    assert ok.p_within is not None and ok.p_within < 0.01
    edge = judge([TTFT], AnalysisSpec(min_samples=200), Evidence([marginal])).checks[0]
    assert edge.status == "inconclusive" and edge.ci is not None
    assert edge.ci[0] <= 1.1 <= edge.ci[1]


def test_a_step_with_no_harm_is_not_a_pass() -> None:
    """Enough samples and no harm shown: the verdict says no harm, not pass."""
    w = windows()
    feed(w, 2000, "b1", seed=1)
    feed(w, 400, "c1", seed=2)
    v = judge([TTFT, ERRORS], AnalysisSpec(min_samples=200), Evidence([w]))
    assert v.status == "inconclusive" and v.no_harm
    errors = v.checks[1]
    assert errors.status == "inconclusive" and errors.ci is not None
    assert errors.ci[1] > 0.01  # 400 canary requests cannot bound errors under +1 point
    few = judge([TTFT, ERRORS], AnalysisSpec(min_samples=1000), Evidence([w]))
    assert not few.no_harm


def test_a_canary_that_looks_worse_does_not_advance_on_no_harm() -> None:
    """x1.25 on 250 canary samples: harm not shown yet, but the estimate is past the
    tolerance and the interval reaches past twice it: the step waits for the evidence."""
    w = windows()
    feed(w, 2000, "b1", seed=1)
    feed(w, 250, "c1", factor=1.25, seed=2)
    v = judge([TTFT, ERRORS], AnalysisSpec(min_samples=200), Evidence([w]))
    ttft = v.checks[0]
    assert ttft.status == "inconclusive" and ttft.effect is not None and ttft.effect > 1.1
    assert not ttft.not_far_off and not v.no_harm
    healthy = windows()
    feed(healthy, 2000, "b1", seed=1)
    feed(healthy, 250, "c1", seed=2)
    assert judge([TTFT, ERRORS], AnalysisSpec(min_samples=200), Evidence([healthy])).no_harm


def test_verdicts() -> None:
    w = windows()
    feed(w, 2000, "b1", seed=1)
    feed(w, 400, "c1", factor=1.5, seed=2)
    v = judge([TTFT, ERRORS], AnalysisSpec(min_samples=200), Evidence([w]))
    assert v.status == "fail" and not v.no_harm
    assert [c.status for c in v.checks] == ["fail", "inconclusive"]
    assert "beyond" in v.summary
    dry = judge([TTFT.model_copy(update={"dry_run": True}), ERRORS], AnalysisSpec(), Evidence([w]))
    assert dry.status == "inconclusive" and dry.checks[0].status == "fail"
    healthy = windows()
    feed(healthy, 20000, "b1", seed=1)
    feed(healthy, 4000, "c1", seed=2)
    assert judge([TTFT, ERRORS], AnalysisSpec(), Evidence([healthy])).status == "pass"
    assert judge([TTFT, ERRORS], AnalysisSpec(), Evidence([windows()])).status == "nodata"


def test_steps_pool_as_strata_and_a_load_change_between_them_does_not_bias() -> None:
    """Two steps, both groups 2x slower in the second (load), the canary's share higher
    there: pooled raw samples would make a healthy canary look slower; strata do not."""
    first, second = windows(), windows(started_at=100.0)
    feed(first, 4500, "b1", seed=1)
    feed(first, 500, "c1", seed=2)
    feed(second, 2500, "b1", factor=2.0, seed=3, t0=101.0)
    feed(second, 2500, "c1", factor=2.0, seed=4, t0=101.0)
    r = evaluate(TTFT, [first, second], 200)
    assert r.strata == 2 and r.effect is not None and abs(r.effect - 1) < 0.05
    assert r.status == "inconclusive" and r.within and r.ci is not None and r.ci[1] < 1.1
    alone = evaluate(TTFT, [second], 200)
    assert alone.ci is not None and r.ci[1] - r.ci[0] < alone.ci[1] - alone.ci[0]
    naive = windows()
    feed(naive, 4500, "b1", seed=1)
    feed(naive, 500, "c1", seed=2)
    feed(naive, 2500, "b1", factor=2.0, seed=3)
    feed(naive, 2500, "c1", factor=2.0, seed=4)
    lumped = evaluate(TTFT, [naive], 200)
    assert lumped.effect is not None and lumped.effect > 1.2  # what stratifying avoids


def test_holm_correction_can_save_a_marginal_check() -> None:
    w = windows()
    feed(w, 500, "b1")
    feed(w, 500, "c1")
    raw = [evaluate(TTFT, [w], 10), evaluate(ERRORS, [w], 10)]
    marginal = raw[0].__class__(**{**raw[0].__dict__, "p_value": 0.008, "harm": True})
    other = raw[1].__class__(**{**raw[1].__dict__, "p_value": 0.5})
    assert settle([marginal, other], AnalysisSpec(correction="none")).status == "fail"
    assert settle([marginal, other], AnalysisSpec(correction="holm")).status != "fail"


TAIL = CheckSpec(name="ttft-p99", metric="ttft", test="exceedance", quantile=0.99, tolerance=0.015)


def test_a_tail_only_regression_fails_the_exceedance_check_not_the_shift_check() -> None:
    slow, healthy = windows(raw_limit=0), windows(raw_limit=0)
    feed(slow, 30000, "b1", seed=1)
    feed(healthy, 30000, "b1", seed=1)
    feed(healthy, 10000, "c1", seed=2)
    rng = np.random.default_rng(3)
    tail = []
    for i in range(10000):  # 4% of the canary's requests take 2 s longer
        ttft = float(rng.lognormal(-1.4, 0.5)) + (2.0 if rng.random() < 0.04 else 0.0)
        tail.append(AccessEvent(timestamp=1 + i * 0.01, model="m", target="c1", ttft=ttft))
    fold(slow, tail)
    tail = evaluate(TAIL, [slow], 200).settle(0.0)
    assert tail.status == "fail" and tail.ci is not None and tail.ci[0] > 0.015
    assert tail.method == "sequential/exceedance" and "tail share" in tail.reason
    assert evaluate(TTFT, [slow], 200).settle(1.0).status != "fail"
    ok = evaluate(TAIL, [healthy], 200).settle(1.0)
    assert ok.status == "pass" and ok.ci is not None and ok.ci[1] < 0.015


def test_an_exceedance_check_needs_its_quantile() -> None:
    with pytest.raises(ValueError, match="quantile"):
        CheckSpec(name="t", metric="ttft", test="exceedance", tolerance=0.01)
    with pytest.raises(ValueError, match="quantile"):
        CheckSpec(name="t", metric="ttft", test="mann-whitney", quantile=0.99)


def test_warmup_events_are_counted_apart_from_the_evidence() -> None:
    w = StepWindows(frozenset({"b1"}), frozenset({"c1"}), 0.0, warmup=30.0)
    feed(w, 100, "c1", factor=3.0, t0=0.0)  # 0..1 s: warming up
    feed(w, 100, "c1", t0=40.0)
    assert w.warm_canary.requests == 100 and w.canary.requests == 100
    assert w.canary.metrics["ttft"].count == 100
    assert w.warm_view().canary is w.warm_canary


def test_positions_make_folding_idempotent() -> None:
    w = windows()
    events = [
        AccessEvent(timestamp=10.0 + i, model="m", target="c1", status=200, ttft=0.2)
        for i in range(5)
    ]
    for offset, e in enumerate(events):
        fold(w, [e], ("p0", offset))
    fold(w, events, ("p0", 0))  # the same records read again (a rewind)
    assert w.canary.requests == 5 and w.duplicates == 5
    # The partition's log was recreated: offsets start over, but the records are newer.
    fold(w, [AccessEvent(timestamp=20.0, model="m", target="c1", status=200, ttft=0.2)], ("p0", 0))
    assert w.canary.requests == 6
    fold(w, [events[0]], ("p1", 0))  # another partition has its own watermark
    assert w.canary.requests == 7
