"""Request-id keys and the removal of records the log pipeline delivered twice."""

from __future__ import annotations

import uuid

import numpy as np

from analyzer.events.columns import Columns, Labels, request_keys
from analyzer.events.dedupe import RequestDedupe


def _cols(ids: list[str | None], ts: list[float], offsets: list[int] | None = None) -> Columns:
    labels = Labels()
    n = len(ids)
    cols = Columns(
        index=np.arange(n),
        timestamp=np.array(ts, dtype=np.float64),
        labels=labels,
        model=labels.encode(["m"] * n),
        target=labels.encode(["a"] * n),
        is_error=np.zeros(n, dtype=bool),
        ttft=np.ones(n),
        duration=np.ones(n),
        prompt_tokens=np.ones(n),
        completion_tokens=np.ones(n),
        request=request_keys(ids),
    )
    if offsets is not None:
        cols.locate("logs-0", np.array(offsets, dtype=np.int64))
    return cols


def test_keys_are_equal_for_equal_ids_distinct_otherwise_and_zero_without_an_id() -> None:
    ids = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(100_000)]
    keys = request_keys(ids)
    assert np.unique(keys).size == len(ids)  # no collision among 100,000 UUIDs
    assert (request_keys(ids[::-1])[::-1] == keys).all()  # a function of the id alone
    assert (keys != 0).all()
    assert (request_keys([None, "", "-"]) == 0).all()
    long = "x" * 200
    assert request_keys([long])[0] == request_keys([long[:64]])[0]  # the first 64 bytes


def test_repeats_are_dropped_within_a_batch_and_across_batches() -> None:
    d = RequestDedupe(window=300)
    first = d.duplicates(_cols(["a", "b", "a", None, None], [0, 1, 2, 3, 4]))
    assert first.tolist() == [False, False, True, False, False]  # rows without an id: kept
    assert d.duplicates(_cols(["b", "c"], [10, 11])).tolist() == [True, False]


def test_the_window_bounds_what_is_remembered() -> None:
    d = RequestDedupe(window=300)
    d.duplicates(_cols(["a"], [0]))
    assert d.duplicates(_cols(["a"], [200])).tolist() == [True]
    d.duplicates(_cols(["z"], [400]))  # "a" was first seen more than 300 s before this
    assert d.duplicates(_cols(["a"], [401])).tolist() == [False]


def test_a_record_read_again_at_its_offset_is_not_a_duplicate() -> None:
    d = RequestDedupe()
    assert not d.duplicates(_cols(["a", "b"], [0, 1], offsets=[10, 11])).any()
    # A rewind reads offsets 10-11 again; offset 12 repeats "a": a real duplicate.
    again = d.duplicates(_cols(["a", "b", "a"], [0, 1, 2], offsets=[10, 11, 12]))
    assert again.tolist() == [False, False, True]
