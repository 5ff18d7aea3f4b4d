"""The Envoy access-log formats that rules/README.md documents, rendered as Envoy renders them
and replayed: the documented configuration is the one the tests read, so the docs cannot drift
from what the `envoy-json` preset accepts.

The rendering follows Envoy's file access logger: `%DURATION%` and `%RESPONSE_DURATION%` are
whole milliseconds, `%START_TIME%` has millisecond precision, a request that failed upstream
(503, flag `UF`) has no response duration, an operator with no value is `null` in the typed
`log_format.json_format` and `"-"` in the string-only `FileAccessLog.json_format`.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, fresh_demo, replay

pytestmark = pytest.mark.slow

DOC = ROOT / "rules" / "README.md"
CLUSTER = "outbound|8000||vllm-llama2-7b-pool-ip-1a2b3c4d.default.svc.cluster.local"


def _dictionaries(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, str(k)), v
            yield from _dictionaries(v, (*path, str(k)))
    elif isinstance(node, list):
        for item in node:
            yield from _dictionaries(item, path)


def documented_formats() -> dict[str, dict[str, str]]:
    """The format dictionaries of rules/README.md's access-logger blocks: ``typed`` (under
    ``log_format``) and ``strings`` (the logger's own ``json_format``)."""
    found: dict[str, dict[str, str]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        if "envoy.access_loggers.file" not in block:
            continue
        for path, value in _dictionaries(YAML(typ="safe").load(block)):
            if path[-1] == "json_format":
                found["typed" if "log_format" in path else "strings"] = value
    return found


def _operators(rec: dict[str, Any], served: str | None) -> dict[str, Any]:
    """What each command operator yields for one simulated request (None: no value)."""
    failed = rec["response_code"] >= 500
    start = datetime.fromisoformat(rec["start_time"].replace("Z", "+00:00"))
    return {
        "%START_TIME%": start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z",
        "%RESPONSE_CODE%": rec["response_code"],
        "%RESPONSE_FLAGS%": "UF" if failed else "-",
        "%DURATION%": math.floor(rec["duration"]),
        "%RESPONSE_DURATION%": None if failed else math.floor(rec["response_duration"]),
        "%REQ(X-REQUEST-ID)%": rec["request_id"],
        "%REQ(X-GATEWAY-MODEL-NAME)%": rec["model"],
        "%DYNAMIC_METADATA(canary-analyzer:served_model)%": served,
        "%UPSTREAM_CLUSTER%": CLUSTER,
        "%UPSTREAM_HOST%": rec["upstream_host"],
    }


def render(fmt: dict[str, str], typed: bool, rec: dict[str, Any], served: str | None) -> bytes:
    values = _operators(rec, served)
    unknown = set(fmt.values()) - set(values)
    assert not unknown, f"rules/README.md uses operators this test cannot render: {unknown}"
    out: dict[str, Any] = {}
    for key, op in fmt.items():
        v = values[op]
        if typed:
            out[key] = v
        else:
            out[key] = "-" if v is None else str(v)
    return orjson.dumps(out)


def _fixture(tmp_path: Path, log: Path, form: str, drop_adapter_every: int | None = None) -> Path:
    fmt = documented_formats()[form]
    lines = []
    for i, raw in enumerate(log.read_bytes().splitlines()):
        rec = orjson.loads(raw)
        served = rec["target_model"]
        if drop_adapter_every and i % 10 < drop_adapter_every:
            served = None  # the filter saw no model in the answer
        lines.append(render(fmt, form == "typed", rec, served))
    out = tmp_path / f"envoy-{form}.jsonl"
    out.write_bytes(b"\n".join(lines) + b"\n")
    return out


def test_the_readme_documents_both_forms_with_the_keys_the_preset_reads() -> None:
    formats = documented_formats()
    assert set(formats) == {"typed", "strings"}
    assert formats["typed"] == formats["strings"]
    needed = {"start_time", "response_code", "duration", "response_duration", "model"}
    assert needed | {"target_model", "request_id"} <= set(formats["typed"])


@pytest.mark.parametrize("form", ["typed", "strings"])
@pytest.mark.parametrize(
    ("options", "phase"),
    [
        ({"canary_ttft_factor": 1.0}, "Succeeded"),
        ({"canary_ttft_factor": 1.0, "canary_error_rate": 0.05}, "RolledBack"),
        ({"canary_ttft_factor": 1.4}, "RolledBack"),
    ],
    ids=["healthy", "uf-errors-5pct", "ttft-x1.4"],
)
def test_a_documented_envoy_log_gets_the_verdict_of_the_clean_log(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    form: str,
    options: dict[str, float],
    phase: str,
) -> None:
    clean = simulated_log(**options)
    envoy = _fixture(tmp_path, clean, form)
    a = replay(fresh_demo(tmp_path / "a") / "rule.yaml", clean, capsys=capsys)
    b = replay(fresh_demo(tmp_path / "b") / "rule.yaml", envoy, capsys=capsys)
    assert b["events"]["rejected"] == 0, b["events"]["rejected_by_reason"]
    assert b["events"]["accepted"] == a["events"]["accepted"]
    assert b["rollouts"][0]["unattributed"] == {}
    assert a["rollouts"][0]["phase"] == b["rollouts"][0]["phase"] == phase
    assert [d["action"] for d in b["rollouts"][0]["decisions"]] == [
        d["action"] for d in a["rollouts"][0]["decisions"]
    ]
    if options.get("canary_error_rate"):
        # The UF lines have no TTFT and still decide: the error check is what fails.
        last = b["rollouts"][0]["decisions"][-1]
        failing = {c["name"] for c in last["checks"] if c["status"] == "fail"}
        assert "errors" in failing


@pytest.mark.parametrize("form", ["typed", "strings"])
def test_a_documented_envoy_log_with_30pct_unattributed_lines_holds(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    form: str,
) -> None:
    clean = simulated_log(canary_ttft_factor=1.0)
    envoy = _fixture(tmp_path, clean, form, drop_adapter_every=3)
    doc = replay(fresh_demo(tmp_path / "w") / "rule.yaml", envoy, capsys=capsys)
    r = doc["rollouts"][0]
    assert doc["events"]["rejected"] == 0
    assert set(r["unattributed"]) == {""}
    actions = [d["action"] for d in r["decisions"]]
    assert "advance" not in actions and "promote" not in actions
    hold = next(d for d in r["decisions"] if d["action"] == "hold")
    assert "data quality" in hold["reason"] and "name no adapter" in hold["reason"]


LUA_HARNESS = """
-- Envoy's Lua API, as much of it as the documented filter uses: body chunks (0-based
-- getBytes), the stream's dynamic metadata.
local chunks, read, metadata = {...}, 0, {}
local function buffer(s)
  return {
    length = function(self) return #s end,
    getBytes = function(self, i, n) return s:sub(i + 1, i + n) end,
  }
end
local handle = {
  bodyChunks = function(self)
    return function()
      read = read + 1
      if chunks[read] then return buffer(chunks[read]) end
    end
  end,
  streamInfo = function(self)
    return {dynamicMetadata = function(self)
      return {set = function(self, ns, k, v) metadata[ns .. ":" .. k] = v end}
    end}
  end,
}
envoy_on_response(handle)
print(metadata["canary-analyzer:served_model"] or "-", read)
"""


def documented_lua() -> str:
    [block] = re.findall(r"```lua\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return str(block)


@pytest.mark.parametrize(
    ("chunks", "served", "read"),
    [
        # vLLM's streamed answer: the first server-sent event names the adapter.
        (
            [
                'data: {"id":"cmpl-1","object":"text_completion","created":1,'
                '"model":"tweet-summary-1","choices":[{"index":0,"text":"Hi"}]}\n\n',
                'data: {"id":"cmpl-1","model":"tweet-summary-1","choices":[]}\n\n',
                "data: [DONE]\n\n",
            ],
            "tweet-summary-1",
            1,
        ),
        # A whole JSON answer, split where Envoy's buffers split it.
        (
            [
                '{"id": "cmpl-2", "object": "text_completion", "model" : "sql-lora-3", "cho',
                'ices": []}',
            ],
            "sql-lora-3",
            1,
        ),
        # An error body names no model: nothing set, every chunk passed through.
        (['{"error": {"message": "upstream connect error"}}'], "-", 2),
    ],
    ids=["streamed", "whole", "error"],
)
def test_the_documented_lua_filter_records_the_served_adapter(
    tmp_path: Path, chunks: list[str], served: str, read: int
) -> None:
    luajit = shutil.which("luajit")
    assert luajit, "luajit (Debian's package, Envoy's Lua) is installed by scripts/test.sh"
    script = tmp_path / "filter.lua"
    script.write_text(documented_lua() + LUA_HARNESS, encoding="utf-8")
    out = subprocess.run(
        [luajit, str(script), *chunks], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [served, str(read)]
