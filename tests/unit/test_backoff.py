"""Retry timing of a rule the API failed under, and liveness of the daemon's loops."""

from __future__ import annotations

import random

from analyzer.rollout.backoff import Backoff
from analyzer.runtime.supervisor import Heartbeats


def test_delays_double_within_equal_jitter_and_stop_at_the_cap() -> None:
    b = Backoff(random.Random(3), base=1.0, cap=60.0)
    for attempt in range(1, 40):
        d = min(60.0, 2.0 ** (attempt - 1))
        delays = [b.delay(attempt) for _ in range(200)]
        assert all(d / 2 <= x <= d for x in delays), attempt
        assert max(delays) - min(delays) > d / 4  # jittered, not one fixed value


def test_an_outage_is_announced_once_after_its_deadline_and_its_end_only_then() -> None:
    b = Backoff(random.Random(1), announce_after=300.0)
    t, said = 1000.0, []
    while t < 1000.0 + 900:
        said.append((t, b.failed(t, "API error 503")))
        assert b.outage is not None and t < b.outage.retry_at <= t + 60
        t = b.outage.retry_at
    announced = [at for at, yes in said if yes]
    assert len(announced) == 1 and 1300.0 <= announced[0] < 1360.0
    ended = b.recovered()
    assert ended is not None and ended.announced and ended.since == 1000.0
    assert b.outage is None and b.recovered() is None
    short = Backoff(random.Random(1), announce_after=300.0)
    assert not short.failed(0.0, "blip") and not short.failed(1.0, "blip")
    blip = short.recovered()
    assert blip is not None and not blip.announced and blip.attempts == 2


def test_a_loop_silent_past_the_stall_is_stuck() -> None:
    now = [0.0]
    beats = Heartbeats(stall=120.0, clock=lambda: now[0])
    ingest = beats.beater("kafka-ingest")
    main = beats.beater("main-loop")
    for t in range(0, 600, 5):
        now[0] = float(t)
        ingest()
        main()
        assert beats.stuck() is None
    now[0] = 700.0
    main()
    assert beats.stuck() is None  # 105 s since the ingest loop's beat: within the stall
    now[0] = 800.0
    main()
    assert beats.stuck() == "kafka-ingest silent for 205s"
