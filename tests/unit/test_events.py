import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.config import EventsSpec
from analyzer.events.lineparser import EventParser

ENVOY = {
    "start_time": "2026-11-26T03:00:00.250Z",
    "response_code": 200,
    "duration": 1500,
    "response_duration": "231.5",
    "model": "lora-request",
    "target_model": "sql-lora",
    "prompt_tokens": 100,
    "completion_tokens": 51,
    "finish_reason": "stop",
    "request_id": "abc",
}


def _line(**over: object) -> bytes:
    return orjson.dumps({**ENVOY, **over})


def test_envoy_preset_units_and_derived_tpot() -> None:
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    e = p.parse_line(_line())
    assert e is not None
    assert e.timestamp == pytest.approx(1795662000.25)
    assert e.ttft == pytest.approx(0.2315)
    assert e.duration == pytest.approx(1.5)
    assert e.tpot == pytest.approx((1.5 - 0.2315) / 50)
    assert (e.status, e.is_error, e.request_id) == (200, False, "abc")


def test_custom_mapping_with_nested_paths_and_units() -> None:
    spec = EventsSpec.model_validate(
        {
            "fields": {
                "timestamp": {"path": "ts_epoch_ms", "format": "epoch_ms"},
                "model": "req.model",
                "target": "resp.served_model",
                "status": "http.code",
                "ttft": {"path": "lat.first_byte_us", "unit": "us"},
                "duration": {"path": "lat.total_us", "unit": "us"},
                "finish_reason": "choices.0.finish_reason",
            }
        }
    )
    p = EventParser(spec)
    line = {
        "ts_epoch_ms": 1795662000123,
        "req": {"model": "m"},
        "resp": {"served_model": "a"},
        "http": {"code": "503"},
        "lat": {"first_byte_us": 250000, "total_us": 900000},
        "choices": [{"finish_reason": "stop"}],
    }
    e = p.parse_line(json.dumps(line))
    assert e is not None
    assert e.timestamp == pytest.approx(1795662000.123)
    assert (e.ttft, e.duration, e.status, e.is_error) == (0.25, 0.9, 503, True)
    assert e.finish_reason == "stop"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795662000, 1795662000.0),
        (1795662000123, 1795662000.123),
        (1795662000123456, 1795662000.123456),
        (1795662000123456789, 1795662000.123456789),
        ("2026-11-26T03:00:00+00:00", 1795662000.0),
        ("1795662000.5", 1795662000.5),
    ],
)
def test_timestamp_autodetect(value: object, expected: float) -> None:
    spec = EventsSpec.model_validate({"fields": {"timestamp": "t", "model": "m", "target": "a"}})
    e = EventParser(spec).parse_line(orjson.dumps({"t": value, "m": "x", "a": "y"}))
    assert e is not None and e.timestamp == pytest.approx(expected)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (
            orjson.dumps({k: v for k, v in ENVOY.items() if k != "start_time"}),
            "missing_field.timestamp",
        ),
        (_line(target_model=["a"]), "wrong_type.target"),
        (_line(response_duration=-1), "negative_value.ttft"),
        (_line(response_duration=1e300), "out_of_range.ttft"),
        (_line(response_duration=0), "out_of_range.ttft"),
        (_line(duration=3_600_001), "out_of_range.duration"),
        (_line(duration="NaN"), "non_finite.duration"),
        (_line(duration="fast"), "wrong_type.duration"),
        (_line(start_time="yesterday"), "bad_timestamp"),
        (_line(start_time=12), "bad_timestamp"),
        (_line(response_code=200.5), "wrong_type.status"),
        (_line(completion_tokens=1.5), "wrong_type.completion_tokens"),
        (_line(completion_tokens=True), "wrong_type.completion_tokens"),
        (b'{"model": "lora-request", "x": "' + b"a" * 70000 + b'"}', "too_long"),
        (b"\xff\xfe{}", "not_json"),
    ],
)
def test_malformed_lines_are_counted_by_reason(line: bytes, reason: str) -> None:
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    assert p.parse_line(line) is None
    assert p.stats.rejected_by_reason == {reason: 1}
    assert p.stats.accepted == 0


def test_a_zero_latency_on_a_failed_request_is_unmeasured_not_rejected() -> None:
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    e = p.parse_line(_line(response_code=503, response_duration=0, duration=0))
    assert e is not None and e.is_error and e.ttft is None and e.duration is None
    assert p.stats.accepted == 1 and p.stats.rejected == 0


def test_other_models_are_ignored_not_rejected() -> None:
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    assert p.parse_line(_line(model="other", duration="garbage")) is None
    assert (p.stats.ignored, p.stats.rejected) == (1, 0)


def test_error_statuses_and_finish_reasons_are_configurable() -> None:
    spec = EventsSpec(
        preset="envoy-json", error_statuses=[429, "5xx"], error_finish_reasons=["error", "abort"]
    )
    p = EventParser(spec)
    assert p.parse_line(_line(response_code=429)).is_error  # type: ignore[union-attr]
    assert p.parse_line(_line(response_code=502)).is_error  # type: ignore[union-attr]
    assert not p.parse_line(_line(response_code=404)).is_error  # type: ignore[union-attr]
    assert p.parse_line(_line(finish_reason="abort")).is_error  # type: ignore[union-attr]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["2026-11-26T03:00:00Z", "1795662000", "-3", "inf", "nan", "1e400"]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.fixed_dictionaries({k: field_values for k in ENVOY}).map(
                lambda d: json.dumps(d, allow_nan=True).encode()
            ),
        ),
        max_size=20,
    )
)
def test_parser_never_raises_and_accounts_for_every_line(lines: list[bytes]) -> None:
    p = EventParser(EventsSpec(preset="envoy-json"))
    for line in lines:
        e = p.parse_line(line)
        if e is not None:
            assert math.isfinite(e.timestamp)
            for v in (e.ttft, e.duration):
                assert v is None or (math.isfinite(v) and v >= 0)
    s = p.stats
    assert s.accepted + s.ignored + s.rejected == len(lines)


def test_envoy_json_format_dashes_are_missing_values_not_malformed_lines() -> None:
    """json_format writes every value as a string and an unset one as "-": a 503 with
    response flag UF has no response duration, and still counts as a request and an error."""
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    uf = _line(
        response_code="503",
        response_duration="-",
        duration="12",
        prompt_tokens="-",
        completion_tokens="-",
        finish_reason="-",
        request_id="-",
    )
    e = p.parse_line(uf)
    assert e is not None and p.stats.rejected == 0
    assert (e.status, e.is_error, e.ttft, e.prompt_tokens, e.request_id) == (
        503,
        True,
        None,
        None,
        None,
    )
    assert e.duration == pytest.approx(0.012)
    ok = p.parse_line(_line(response_code="200", completion_tokens="51", prompt_tokens="100"))
    assert ok is not None and (ok.status, ok.completion_tokens, ok.is_error) == (200, 51, False)
    before = p.stats.rejected
    assert p.parse_line(_line(model="-")) is None
    assert p.stats.rejected == before + 1 and p.last_rejection == "missing_field.model"


@pytest.mark.parametrize("target", [None, "", "-"])
def test_a_line_naming_no_adapter_is_kept_for_the_rule_to_count(target: object) -> None:
    p = EventParser(EventsSpec(preset="envoy-json"), ["lora-request"])
    e = p.parse_line(_line(target_model=target))
    assert e is not None and e.target == "" and p.stats.rejected == 0
    without = orjson.dumps({k: v for k, v in ENVOY.items() if k != "target_model"})
    assert (e2 := p.parse_line(without)) is not None and e2.target == ""
