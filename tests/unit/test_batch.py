"""The columnar parser accepts and rejects exactly what the per-line parser does."""

import json
import math
from types import SimpleNamespace

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.config import EventsSpec
from analyzer.events.batchparser import BatchParser
from analyzer.events.columns import Columns
from analyzer.events.lineparser import EventParser
from analyzer.sources.kafka import _offsets
from tests.unit.test_events import ENVOY, field_values

MESSY = [
    orjson.dumps(ENVOY),
    orjson.dumps({**ENVOY, "response_duration": "NaN"}),
    orjson.dumps({**ENVOY, "duration": -1}),
    orjson.dumps({**ENVOY, "completion_tokens": 1.5}),
    orjson.dumps({**ENVOY, "response_code": "503"}),
    orjson.dumps({**ENVOY, "response_code": 200.5}),
    orjson.dumps({**ENVOY, "start_time": 1795662000123}),
    orjson.dumps({**ENVOY, "start_time": "yesterday"}),
    orjson.dumps({**ENVOY, "model": "other", "duration": "x"}),
    orjson.dumps({**ENVOY, "target_model": ""}),
    orjson.dumps({**ENVOY, "model": ""}),
    orjson.dumps({**ENVOY, "model": 7}),
    orjson.dumps({**ENVOY, "response_duration": 1e400}),
    orjson.dumps({**ENVOY, "response_duration": 1e300}),
    orjson.dumps({**ENVOY, "response_code": "200.5"}),
    orjson.dumps({**ENVOY, "response_code": "-", "response_duration": "-"}),
    orjson.dumps({**ENVOY, "response_duration": "nan"}),
    orjson.dumps({**ENVOY, "response_duration": ""}),
    orjson.dumps({**ENVOY, "completion_tokens": "12"}),
    orjson.dumps({**ENVOY, "response_duration": 0}),
    orjson.dumps({**ENVOY, "response_duration": 0, "response_code": 503}),
    orjson.dumps({**ENVOY, "duration": 3_600_001}),
    orjson.dumps({**ENVOY, "finish_reason": None, "response_code": None}),
    orjson.dumps({**ENVOY, "request_id": 42}),
    orjson.dumps({k: v for k, v in ENVOY.items() if k != "duration"}),
    b"{oops",
    b"[1]",
    b'{"model": "lora-request"}',
]


def _both(lines: list[bytes], model_first: bool) -> tuple[EventParser, EventParser, list, Columns]:  # type: ignore[type-arg]
    spec = EventsSpec(preset="envoy-json", error_statuses=["5xx", 429])
    one, batch_parser = EventParser(spec, ["lora-request"]), EventParser(spec, ["lora-request"])
    events = [(i, e) for i, line in enumerate(lines) if (e := one.parse_line(line)) is not None]
    bp = BatchParser(batch_parser)
    if model_first:  # as after a batch where most lines were for other models
        bp._watched_share = 0.0
    cols = bp.parse(lines)
    return one, batch_parser, events, cols


def _check(lines: list[bytes]) -> None:
    for model_first in (False, True):
        _check_mode(lines, model_first)


def _check_mode(lines: list[bytes], model_first: bool) -> None:
    one, other, events, cols = _both(lines, model_first)
    assert other.stats.accepted == one.stats.accepted == len(cols)
    assert other.stats.ignored == one.stats.ignored
    assert other.stats.rejected_by_reason == one.stats.rejected_by_reason
    assert [i for i, _ in events] == cols.index.tolist()
    names = cols.labels.names()
    for k, (_, e) in enumerate(events):
        assert cols.timestamp[k] == e.timestamp
        assert names[cols.target[k]] == e.target and names[cols.model[k]] == e.model
        assert bool(cols.is_error[k]) == e.is_error
        for name in ("ttft", "duration", "prompt_tokens", "completion_tokens"):
            v = getattr(e, name)
            got = cols.__dict__[name][k]
            assert (v is None and math.isnan(got)) or got == v


def test_messy_corpus_same_verdicts() -> None:
    _check(MESSY * 3)


def test_envoy_json_format_lines_same_verdicts() -> None:
    """Every value a string, unset ones "-" (Envoy json_format): both parsers agree."""
    text = {k: str(v) for k, v in ENVOY.items()}
    uf = {**text, "response_code": "503", "response_duration": "-", "completion_tokens": "-"}
    lines = [orjson.dumps(r) for r in (text, uf, {**text, "target_model": "-"})]
    lines.append(orjson.dumps({**text, "model": "-"}))
    _check(lines * 700)  # several chunks, each with every kind


def test_bad_lines_inside_large_batches_cost_only_their_chunk() -> None:
    good = orjson.dumps(ENVOY)
    lines = [good] * 2500
    lines[5] = b"x" * 70_000  # too long
    lines[1100] = b"{oops"
    lines[2499] = orjson.dumps({**ENVOY, "response_duration": "NaN"})
    _check(lines)
    bp = BatchParser(EventParser(EventsSpec(preset="envoy-json"), ["lora-request"]))
    cols = bp.parse(lines)
    assert len(cols) == 2497
    assert bp.rejected == [(5, "too_long"), (1100, "not_json"), (2499, "non_finite.ttft")]


def test_deeply_nested_lines_cost_only_themselves() -> None:
    """Nesting deep enough to exhaust a recursive decoder: rejected as too_deep, one line each,
    by both parsers; the rest of the batch is kept."""
    good = orjson.dumps(ENVOY)
    nested = b'{"model":"lora-request","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    deeper = b'{"a":' * 3000 + b"1" + b"}" * 3000
    lines = [good] * 3000
    lines[7], lines[1500], lines[2999] = nested, deeper, nested
    _check(lines)
    bp = BatchParser(EventParser(EventsSpec(preset="envoy-json"), ["lora-request"]))
    cols = bp.parse(lines)
    assert len(cols) == 2997
    assert bp.rejected == [(7, "too_deep"), (1500, "too_deep"), (2999, "too_deep")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({k: field_values for k in ENVOY}), max_size=15))
def test_random_lines_same_verdicts(rows: list[dict]) -> None:  # type: ignore[type-arg]
    _check([json.dumps({**r, "model": "lora-request"}, allow_nan=True).encode() for r in rows])


models = st.sampled_from(["lora-request", "other", "", 7, None, "lora-request-2"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.fixed_dictionaries({k: field_values for k in ENVOY}), models),
        max_size=15,
    )
)
def test_random_models_same_verdicts(rows: list[tuple[dict, object]]) -> None:  # type: ignore[type-arg]
    _check([json.dumps({**r, "model": m}, allow_nan=True).encode() for r, m in rows])


def test_model_first_reading_when_most_lines_are_for_other_models() -> None:
    watched = orjson.dumps(ENVOY)
    other = orjson.dumps({**ENVOY, "model": "someone-else"})
    lines = [other] * 900 + [watched] * 100 + [b"{oops"]
    bp = BatchParser(EventParser(EventsSpec(preset="envoy-json"), ["lora-request"]))
    bp.parse(lines)  # learns that a tenth of the lines are watched
    assert bp._watched_share < 0.5
    cols = bp.parse(lines)
    assert len(cols) == 100 and cols.index.tolist() == list(range(900, 1000))
    assert bp.rejected == [(1000, "not_json")]
    assert bp.parser.stats.ignored == 1800 and bp.parser.stats.accepted == 200
    bp.parse([watched] * 10)  # mostly watched again: back to one full decode per line
    assert bp._watched_share == 1.0


def test_dead_letter_reasons_are_reported_per_line() -> None:
    spec = EventsSpec(preset="envoy-json")
    bp = BatchParser(EventParser(spec, ["lora-request"]))
    bp.parse([b"{oops", orjson.dumps(ENVOY), b"[1]"])
    assert bp.rejected == [(0, "not_json"), (2, "not_object")]
    assert np.array_equal(bp.parse([]).index, np.array([], dtype=np.int64))


def test_kafka_offsets_with_and_without_gaps() -> None:
    def records(offsets: list[int]) -> list[SimpleNamespace]:
        return [SimpleNamespace(offset=o) for o in offsets]

    assert _offsets(records([5, 6, 7])).tolist() == [5, 6, 7]
    # Compaction or transaction markers leave gaps: every offset is read then.
    assert _offsets(records([5, 7, 8, 12])).tolist() == [5, 7, 8, 12]
    assert _offsets([]).tolist() == []
