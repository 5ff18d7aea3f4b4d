"""The embedded product end to end on files: simulated gateway logs, replay, decisions, manifest.

Logs come from the closed-loop simulator (the gateway follows the weights the analyzer writes),
so each step really shifts traffic; replays then run on fresh copies of the bundled manifest.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from ruamel.yaml import YAML

from analyzer.cli import main
from analyzer.commands.run import run_file
from analyzer.config import load_rules
from analyzer.notify.base import NoopNotifier
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from tests.conftest import DEMO, fresh_demo, replay
from tests.servers.crd import validate

pytestmark = pytest.mark.slow

ORIGINAL = {f"tweet-summary{s}": 10 for s in ("", "-1", "-2", "-3", "-4")} | {
    f"sql-lora{s}": 10 for s in ("", "-1", "-2", "-3", "-4")
}
CANARY = [f"tweet-summary{s}" for s in ("", "-1", "-2", "-3", "-4")]
# The demo's canary had half the traffic before the rollout: rolled back, it gets none, and the
# baseline adapters keep their proportions (v1alpha1 keeps a 0% target at 0).
ROLLED_BACK = {a: (0 if a in CANARY else 20) for a in ORIGINAL}


def _manifest(work: Path) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load((work / "inferencemodel.yaml").read_text())  # type: ignore[no-any-return]


def _check_document_shape(doc: dict) -> None:  # type: ignore[type-arg]
    assert set(doc) >= {"rollouts", "events"}
    assert set(doc["events"]) >= {"accepted", "rejected", "rejected_by_reason"}
    for r in doc["rollouts"]:
        assert set(r) >= {"name", "phase", "step", "weights", "decisions"}
        for d in r["decisions"]:
            assert set(d) >= {"at", "action", "reason", "checks"}
            for c in d["checks"]:
                assert set(c) >= {
                    "name",
                    "status",
                    "p_value",
                    "effect",
                    "ci",
                    "n_baseline",
                    "n_canary",
                }


def test_canary_40_percent_slower_rolls_back(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    doc = replay(work / "rule.yaml", simulated_log(canary_ttft_factor=1.4), capsys=capsys)
    _check_document_shape(doc)
    r = doc["rollouts"][0]
    assert r["phase"] == "RolledBack"
    assert r["weights"] == ROLLED_BACK
    last = r["decisions"][-1]
    assert last["action"] == "rollback"
    ttft = next(c for c in last["checks"] if c["name"] == "ttft")
    assert ttft["status"] == "fail" and ttft["p_value"] < 0.01
    assert 1.25 < ttft["effect"] < 1.55 and ttft["ci"][0] > 1.1
    assert 20 <= ttft["n_canary"] < 200  # sequential: fails before minSamples, never passes
    manifest = _manifest(work)
    assert {t["name"]: t["weight"] for t in manifest["spec"]["targetModels"]} == ROLLED_BACK
    assert validate(manifest) == []


@pytest.mark.parametrize("factor", [1.0, 1.03])
def test_healthy_canary_promotes_to_100(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    factor: float,
) -> None:
    work = fresh_demo(tmp_path)
    doc = replay(work / "rule.yaml", simulated_log(canary_ttft_factor=factor), capsys=capsys)
    r = doc["rollouts"][0]
    assert r["phase"] == "Succeeded"
    assert [d["action"] for d in r["decisions"]] == ["start", "advance", "advance", "promote"]
    weights = r["weights"]
    assert sum(weights[c] for c in CANARY) == sum(weights.values())
    assert validate(_manifest(work)) == []
    for d in r["decisions"][1:-1]:  # intermediate steps advance on no harm shown
        assert all(c["status"] in ("pass", "inconclusive") for c in d["checks"])
    promote = r["decisions"][-1]
    for c in promote["checks"]:  # the promotion on every check shown within tolerance
        assert c["status"] == "pass" and c["ci"][1] < c["bound"], c


def test_no_canary_traffic_never_promotes(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # A gateway that never reaches the canary adapters: drop their lines from a healthy log
    # recorded for long enough to pass maxStepDuration.
    source = simulated_log(canary_ttft_factor=1.0, max_duration=900, rps=20, seed=7)
    lines = [
        ln
        for ln in source.read_bytes().splitlines()
        if orjson.loads(ln)["target_model"] not in CANARY
    ]
    log = tmp_path / "no-canary.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    work = fresh_demo(tmp_path / "w")
    doc = replay(work / "rule.yaml", log, capsys=capsys)
    r = doc["rollouts"][0]
    assert r["phase"] == "Progressing" and r["step"] == 0
    actions = [d["action"] for d in r["decisions"]]
    assert "advance" not in actions and "promote" not in actions
    assert actions in (["start"], ["start", "hold"])


def test_malformed_lines_are_reported_and_decisions_still_made(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = simulated_log(canary_ttft_factor=1.4).read_bytes().splitlines()
    corruptions = itertools.cycle(
        [
            (lambda ln: ln[: len(ln) // 2], "not_json"),
            (lambda ln: b'"a string"', "not_object"),
            (lambda ln: ln.replace(b'"start_time"', b'"other_key"'), "missing_field.timestamp"),
            (
                lambda ln: ln.replace(b'"response_duration":', b'"response_duration":-'),
                "negative_value.ttft",
            ),
            (lambda ln: ln.replace(b'"start_time":"', b'"start_time":"x'), "bad_timestamp"),
        ]
    )
    expected: Counter[str] = Counter()
    lines = []
    for i, line in enumerate(good):
        if i % 10 == 9:
            corrupt, reason = next(corruptions)
            lines.append(corrupt(line))
            expected[reason] += 1
        else:
            lines.append(line)
    log = tmp_path / "dirty.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    work = fresh_demo(tmp_path / "w")
    doc = replay(work / "rule.yaml", log, capsys=capsys)
    assert doc["rollouts"][0]["phase"] == "RolledBack"
    assert doc["events"]["rejected_by_reason"] == dict(expected)
    assert doc["events"]["rejected"] == sum(expected.values()) == len(good) // 10
    assert doc["events"]["accepted"] == len(good) - len(good) // 10


def test_replay_reaches_the_decisions_of_the_live_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = fresh_demo(tmp_path / "live")
    log = tmp_path / "rec.jsonl"
    capsys.readouterr()
    assert (
        main(
            [
                "simulate",
                "--rules",
                str(live / "rule.yaml"),
                "--start",
                "1795662000",
                "--record",
                str(log),
                "--linger",
                "20",
                "--seed",
                "5",
                "--json",
            ]
        )
        == 0
    )
    live_doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    work = fresh_demo(tmp_path / "replay")
    doc = replay(work / "rule.yaml", log, capsys=capsys)
    a = live_doc["rollouts"][0]["decisions"]
    b = doc["rollouts"][0]["decisions"]
    assert [d["action"] for d in a] == [d["action"] for d in b]
    # The replay starts its clock at the first event, a fraction of a second after the live run.
    assert all(abs(x["at"] - y["at"]) < 1.0 for x, y in zip(a, b, strict=True))
    assert doc["rollouts"][0]["weights"] == live_doc["rollouts"][0]["weights"]


def test_restart_mid_step_resumes_from_the_annotation(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines(keepends=True)
    once = fresh_demo(tmp_path / "once")
    whole = replay(once / "rule.yaml", log, capsys=capsys)["rollouts"][0]
    twice = fresh_demo(tmp_path / "twice")
    head = tmp_path / "head.jsonl"
    head.write_bytes(b"".join(lines[: len(lines) * 45 // 100]))
    first = replay(twice / "rule.yaml", head, capsys=capsys)["rollouts"][0]
    assert first["phase"] == "Progressing"
    # A new process reads the state back and replays the whole log: events before the step's
    # start are skipped, so the step's windows hold exactly what an unbroken run would.
    second = replay(twice / "rule.yaml", log, capsys=capsys)["rollouts"][0]
    assert "start" not in [d["action"] for d in second["decisions"]]
    assert second["phase"] == whole["phase"] == "Succeeded"
    assert second["weights"] == whole["weights"]
    assert (first["decisions"] + second["decisions"]) == whole["decisions"]
    # Finished stays finished: a third run changes nothing.
    before = (twice / "inferencemodel.yaml").read_bytes()
    third = replay(twice / "rule.yaml", log, capsys=capsys)["rollouts"][0]
    assert third["phase"] == "Succeeded" and third["decisions"] == []
    assert (twice / "inferencemodel.yaml").read_bytes() == before


def test_human_edit_pauses_and_command_annotation_resumes(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulated_log(canary_ttft_factor=1.0)
    lines = log.read_bytes().splitlines(keepends=True)
    work = fresh_demo(tmp_path)
    manifest = work / "inferencemodel.yaml"
    head, tail = tmp_path / "head.jsonl", tmp_path / "tail.jsonl"
    head.write_bytes(b"".join(lines[: len(lines) // 4]))
    tail.write_bytes(b"".join(lines[len(lines) // 4 :]))
    replay(work / "rule.yaml", head, capsys=capsys)
    yaml = YAML(typ="rt")
    doc = yaml.load(manifest.read_text())
    doc["spec"]["targetModels"][0]["weight"] = 1  # someone edits by hand
    with manifest.open("w") as fh:
        yaml.dump(doc, fh)
    r = replay(work / "rule.yaml", tail, capsys=capsys)["rollouts"][0]
    assert r["phase"] == "Paused"
    assert r["decisions"][-1]["action"] == "pause"
    assert "changed outside canary-analyzer" in r["decisions"][-1]["reason"]
    assert r["weights"]["tweet-summary"] == 1  # the daemon does not fight the human
    doc = yaml.load(manifest.read_text())
    doc["metadata"]["annotations"]["canary-analyzer.io/command.lora-request-canary"] = (
        "resume: weights checked by bob"
    )
    with manifest.open("w") as fh:
        yaml.dump(doc, fh)
    r = replay(work / "rule.yaml", tail, capsys=capsys)["rollouts"][0]
    assert r["decisions"][0]["action"] == "resume" and "bob" in r["decisions"][0]["reason"]
    annotations = _manifest(work)["metadata"]["annotations"]
    assert "canary-analyzer.io/command.lora-request-canary" not in annotations


def test_dry_run_decides_but_writes_nothing(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    before = (work / "inferencemodel.yaml").read_bytes()
    doc = replay(
        work / "rule.yaml", simulated_log(canary_ttft_factor=1.4), "--dry-run", capsys=capsys
    )
    r = doc["rollouts"][0]
    assert r["phase"] == "RolledBack" and r["decisions"][-1]["action"] == "rollback"
    assert (work / "inferencemodel.yaml").read_bytes() == before


def test_an_object_that_does_not_fit_the_rule_is_an_error(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    rule = work / "rule.yaml"
    rule.write_text(rule.read_text().replace("sql-lora-4]", "sql-lora-9]"))
    doc = replay(rule, simulated_log(canary_ttft_factor=1.0), capsys=capsys)
    assert doc["exit_code"] == 1
    assert "sql-lora-9" in doc["rollouts"][0]["error"]


def test_two_rules_run_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = fresh_demo(tmp_path)
    shutil.copyfile(
        DEMO.parents[1] / "rules/examples/inferencemodelrewrite.yaml", work / "rewrite.yaml"
    )
    (work / "rule2.yaml").write_text(
        (DEMO / "rule.yaml")
        .read_text()
        .replace("name: lora-request-canary", "name: summarize-canary")
        .replace("kind: InferenceModel\n", "kind: InferenceModelRewrite\n")
        .replace(
            "apiVersion: inference.networking.x-k8s.io/v1alpha1", "apiVersion: llm-d.ai/v1alpha2"
        )
        .replace("name: inferencemodel-sample", "name: summarize-rewrite")
        .replace("file: inferencemodel.yaml", "file: rewrite.yaml")
        .replace("model: lora-request", "model: summarize")
        .replace(
            "baseline: [sql-lora, sql-lora-1, sql-lora-2, sql-lora-3, sql-lora-4]",
            "baseline: [tweet-summary, tweet-summary-1]",
        )
        .replace(
            "canary: [tweet-summary, tweet-summary-1, tweet-summary-2, tweet-summary-3, "
            "tweet-summary-4]",
            "canary: [tweet-summary-v2]",
        )
    )
    capsys.readouterr()
    code = main(
        [
            "simulate",
            "--rules",
            str(work / "rule.yaml"),
            "--rules",
            str(work / "rule2.yaml"),
            "--start",
            "1795662000",
            "--canary-ttft-factor",
            "1.4",
            "--json",
            "--in-place",  # the manifests themselves, to check what was written
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    phases = {r["name"]: r["phase"] for r in out["rollouts"]}
    assert phases == {"lora-request-canary": "RolledBack", "summarize-canary": "RolledBack"}
    rewrite = YAML(typ="safe").load((work / "rewrite.yaml").read_text())
    assert validate(rewrite) == []
    assert rewrite["spec"]["rules"][0]["targets"] == [
        {"modelRewrite": "tweet-summary", "weight": 50},
        {"modelRewrite": "tweet-summary-1", "weight": 50},
    ]


async def _replay_engine(work: Path, lines: list[bytes], columnar: bool) -> tuple[object, ...]:
    loaded = load_rules([work / "rule.yaml"])[0][0]
    controller = RolloutController(loaded, make_router(loaded), NoopNotifier())
    engine = Engine([controller])
    seen: list[tuple[float, list[tuple[str, str, float | None, int, int]]]] = []
    controller.on_judgment = lambda c, now, verdict: seen.append(
        (now, [(r.name, r.status, r.p_value, r.n_baseline, r.n_canary) for r in verdict.checks])
    )
    for start in range(0, len(lines), 4096):
        batch = lines[start : start + 4096]
        if columnar:
            await engine.feed_lines(batch)
        else:
            for line in batch:  # one line at a time: every row its own batch
                await engine.feed_lines([line])
    await engine.finish()
    decisions = [(d.at, d.action, d.canary_percent) for d in controller.decisions]
    stats = engine.stats
    return decisions, seen, stats.accepted, stats.ignored, dict(stats.rejected_by_reason)


@pytest.mark.parametrize(("factor", "disorder"), [(1.0, 0), (1.0, 40), (1.4, 0), (1.4, 40)])
def test_columnar_replay_equals_the_per_line_replay(
    tmp_path: Path, simulated_log: Callable[..., Path], factor: float, disorder: int
) -> None:
    """Same judgments (p-values, sample sizes), decisions and counts, whether a file is replayed
    line by line or in columns, also when lines arrive up to ``disorder`` places out of order."""
    lines = simulated_log(canary_ttft_factor=factor).read_bytes().splitlines(keepends=True)
    lines += [b"{oops\n", b"\n", b'{"model": "lora-request"}\n']
    if disorder:
        rng = random.Random(7)
        keyed = sorted(range(len(lines)), key=lambda i: i + rng.uniform(0, disorder))
        lines = [lines[i] for i in keyed]
    per_line = asyncio.run(_replay_engine(fresh_demo(tmp_path / "a"), lines, columnar=False))
    columnar = asyncio.run(_replay_engine(fresh_demo(tmp_path / "b"), lines, columnar=True))
    assert per_line == columnar
    decisions, judgments, _, _, rejected = per_line
    assert decisions[-1][1] == ("rollback" if factor > 1 else "promote")  # type: ignore[index]
    assert len(judgments) >= 2 and rejected == {"not_json": 1, "missing_field.timestamp": 1}  # type: ignore[arg-type]


def test_the_warmup_guard_rolls_back_a_broken_canary_before_the_warmup_ends(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulated_log(canary_ttft_factor=5.0)
    plain = fresh_demo(tmp_path / "plain")
    guarded = fresh_demo(tmp_path / "guarded")
    rule = (guarded / "rule.yaml").read_text()
    (guarded / "rule.yaml").write_text(
        rule.replace("onInconclusive: hold", "onInconclusive: hold\n    warmupGuard: {ratio: 3.0}")
    )
    without = replay(plain / "rule.yaml", log, capsys=capsys)["rollouts"][0]["decisions"]
    with_guard = replay(guarded / "rule.yaml", log, capsys=capsys)["rollouts"][0]["decisions"]
    start = without[0]["at"]
    assert [d["action"] for d in without] == ["start", "hold", "rollback"]  # 2 failures
    assert without[1]["at"] - start > 30  # the warm-up is no evidence...
    assert [d["action"] for d in with_guard] == ["start", "rollback"]
    assert with_guard[-1]["at"] - with_guard[0]["at"] < 30  # ...unless the guard is shown
    assert "warm-up guard" in with_guard[-1]["reason"]
    ttft = next(c for c in with_guard[-1]["checks"] if c["name"] == "ttft")
    assert ttft["status"] == "fail" and ttft["ci"][0] > 3.0


def _json_format(line: bytes) -> bytes:
    """The same request as Envoy's json_format writes it: strings, and "-" for unset values
    (a failed request has no response duration)."""
    rec = orjson.loads(line)
    if rec["response_code"] >= 500:
        rec["response_duration"] = None
        rec["completion_tokens"] = None
    return orjson.dumps({k: "-" if v is None else str(v) for k, v in rec.items()})


def test_envoy_json_format_replays_like_typed_json(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    typed = simulated_log(canary_ttft_factor=1.0, canary_error_rate=0.05)
    text = tmp_path / "json_format.jsonl"
    text.write_bytes(b"\n".join(_json_format(ln) for ln in typed.read_bytes().splitlines()))
    a = replay(fresh_demo(tmp_path / "a") / "rule.yaml", typed, capsys=capsys)
    b = replay(fresh_demo(tmp_path / "b") / "rule.yaml", text, capsys=capsys)
    assert b["events"]["rejected"] == 0 and b["events"]["accepted"] == a["events"]["accepted"]
    assert b["rollouts"][0]["phase"] == a["rollouts"][0]["phase"] == "RolledBack"
    actions = [(d["at"], d["action"]) for d in a["rollouts"][0]["decisions"]]
    assert [(d["at"], d["action"]) for d in b["rollouts"][0]["decisions"]] == actions


def test_lines_naming_no_adapter_are_unattributed_and_the_data_quality_gate_holds(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """30% of a healthy log's lines name no adapter ("-", null, or one in neither group):
    counted per rule, and the rollout holds instead of advancing on that data."""
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()
    names = itertools.cycle([b'"-"', b"null", b'"other-lora"'])
    dirty = [
        re.sub(rb'"target_model":"[^"]*"', b'"target_model":' + next(names), ln)
        if i % 10 < 3
        else ln
        for i, ln in enumerate(lines)
    ]
    log = tmp_path / "unattributed.jsonl"
    log.write_bytes(b"\n".join(dirty) + b"\n")
    doc = replay(fresh_demo(tmp_path / "w") / "rule.yaml", log, capsys=capsys)
    r = doc["rollouts"][0]
    assert doc["events"]["rejected"] == 0 and doc["events"]["accepted"] == len(lines)
    assert set(r["unattributed"]) == {"", "other-lora"}
    actions = [d["action"] for d in r["decisions"]]
    assert "advance" not in actions and "promote" not in actions
    hold = next(d for d in r["decisions"] if d["action"] == "hold")
    assert "data quality" in hold["reason"] and "name no adapter" in hold["reason"]
    clean = replay(
        fresh_demo(tmp_path / "c") / "rule.yaml", lines_log(tmp_path, lines), capsys=capsys
    )
    assert clean["rollouts"][0]["unattributed"] == {}
    assert clean["rollouts"][0]["phase"] == "Succeeded"


@pytest.mark.parametrize(("every", "holds"), [(10, True), (50, False)])
def test_unreadable_lines_hold_the_rollout_past_the_limit(
    every: int,
    holds: bool,
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every 10th line of a healthy log cut in half (10% unreadable, over the 5% limit): before,
    only counted, and the rollout promoted on the other 90%. Every 50th (2%): it promotes."""
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()
    dirty = [ln[: len(ln) // 2] if i % every == 0 else ln for i, ln in enumerate(lines)]
    doc = replay(fresh_demo(tmp_path) / "rule.yaml", lines_log(tmp_path, dirty), capsys=capsys)
    r = doc["rollouts"][0]
    assert doc["events"]["rejected"] == len(range(0, len(lines), every))
    actions = [d["action"] for d in r["decisions"]]
    if holds:
        assert "advance" not in actions and "promote" not in actions
        hold = next(d for d in r["decisions"] if d["action"] == "hold")
        assert "could not be read" in hold["reason"] and "not_json" in hold["reason"]
    else:
        assert r["phase"] == "Succeeded"


def test_records_delivered_twice_count_once(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A third of a slow canary's lines delivered again a few lines later (an at-least-once
    pipeline retrying): before, counted twice, narrowing every interval. Now the same
    judgments and decisions as the log without them, and each repeat counted."""
    lines = simulated_log(canary_ttft_factor=1.4).read_bytes().splitlines()
    doubled: list[bytes] = []
    repeat: list[bool] = []
    for i, line in enumerate(lines):
        doubled.append(line)
        repeat.append(False)
        if i % 3 == 0 and i >= 5:
            doubled.append(lines[i - 5])
            repeat.append(True)
    clean_log = lines_log(tmp_path, lines)
    clean = replay(fresh_demo(tmp_path / "c") / "rule.yaml", clean_log, capsys=capsys)
    log = tmp_path / "doubled.jsonl"
    log.write_bytes(b"\n".join(doubled) + b"\n")
    twice = replay(fresh_demo(tmp_path / "d") / "rule.yaml", log, capsys=capsys)
    read = twice["events"]["accepted"] + twice["events"]["rejected"]  # reading stops at the end
    assert twice["events"]["rejected_by_reason"] == {"duplicate_request": sum(repeat[:read])}
    assert twice["rollouts"][0]["decisions"] == clean["rollouts"][0]["decisions"]
    assert clean["rollouts"][0]["decisions"][-1]["action"] == "rollback"


def lines_log(tmp_path: Path, lines: list[bytes]) -> Path:
    log = tmp_path / "clean.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    return log


def test_a_command_left_on_a_finished_rollout_does_not_touch_the_next(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An ``abort`` annotated by hand after a rollout finished (the CLI refuses to) waited
    there and rolled back the next rollout at its first judgment."""
    work = fresh_demo(tmp_path)
    first = replay(work / "rule.yaml", simulated_log(canary_ttft_factor=1.4), capsys=capsys)
    assert first["rollouts"][0]["phase"] == "RolledBack"  # the baseline has its traffic back
    log = simulated_log(canary_ttft_factor=1.0)
    manifest = work / "inferencemodel.yaml"
    yaml = YAML()
    doc = yaml.load(manifest.read_text())
    key = "canary-analyzer.io/command.lora-request-canary"
    doc["metadata"]["annotations"][key] = "abort: left over"
    with manifest.open("w") as fh:
        yaml.dump(doc, fh)
    rule = work / "rule.yaml"
    rule.write_text(rule.read_text().replace("steps: [10, 25, 50, 100]", "steps: [20, 100]"))
    second = replay(rule, log, capsys=capsys)["rollouts"][0]
    actions = [d["action"] for d in second["decisions"]]
    assert actions[0] == "start" and "rollback" not in actions, actions
    assert key not in YAML().load(manifest.read_text())["metadata"]["annotations"]


def test_follow_reads_a_growing_rotated_log_as_a_replay_of_it_would(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """``run --events FILE --follow``: the log written in three parts while it is read, the
    third after the file was rotated (renamed, a new one at its path), as logrotate does."""
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines(keepends=True)
    third = len(lines) // 3
    work = fresh_demo(tmp_path / "follow")
    log = work / "live.jsonl"
    log.write_bytes(b"".join(lines[:third]))

    def writer() -> None:
        time.sleep(0.5)
        with log.open("ab") as fh:
            fh.write(b"".join(lines[third : 2 * third]))
        time.sleep(0.5)
        log.rename(work / "live.jsonl.1")
        time.sleep(0.5)
        (work / "live.jsonl").write_bytes(b"".join(lines[2 * third :]))

    thread = threading.Thread(target=writer)
    thread.start()
    rules = load_rules([work / "rule.yaml"])[0]
    followed = asyncio.run(run_file(rules, str(log), False, None, follow=True))
    thread.join()
    clean = fresh_demo(tmp_path / "clean")
    whole = asyncio.run(
        run_file(load_rules([clean / "rule.yaml"])[0], str(lines_log(tmp_path, lines)), False, None)
    )
    decided = [(d.at, d.action) for d in followed.controllers[0].decisions]
    assert decided == [(d.at, d.action) for d in whole.controllers[0].decisions]
    assert decided[-1][1] == "promote"  # and run stopped by itself once it was over


def test_simulate_leaves_the_users_manifest_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a simulation wrote its weights (and its state annotation) into the manifest the
    rule names: a user's real file, changed by a what-if."""
    work = fresh_demo(tmp_path)
    manifest = work / "inferencemodel.yaml"
    before = manifest.read_bytes()
    argv = ["simulate", "--rules", str(work / "rule.yaml"), "--start", "1795662000", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["rollouts"][0]["phase"] == "Succeeded"
    assert manifest.read_bytes() == before
    assert main([*argv, "--in-place"]) == 0
    assert manifest.read_bytes() != before
    assert "canary-analyzer.io/rollout.lora-request-canary" in manifest.read_text()
