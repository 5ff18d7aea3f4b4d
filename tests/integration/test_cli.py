import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer.cli import build_parser, main
from tests.conftest import DEMO, ROOT, fresh_demo, replay


def test_rules_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "validate", str(ROOT / "rules")]) == 0
    assert "rule sql-lora-v2 ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((DEMO / "rule.yaml").read_text().replace("minSamples: 200", "minSamples: lots"))
    assert main(["rules", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:22:5: spec.analysis.minSamples: Input should be a valid integer" in out
    assert main(["rules", "validate", str(tmp_path / "empty-dir-missing")]) != 0


def test_rules_validate_skips_a_manifest_beside_the_rules_but_not_a_mistyped_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's folder (rule + InferenceModel manifest) reported the manifest as 11 broken
    rule fields and exited 1."""
    work = fresh_demo(tmp_path / "demo")
    capsys.readouterr()
    assert main(["rules", "validate", str(work)]) == 0
    out = capsys.readouterr().out
    assert "inferencemodel.yaml:3:1: skipped: InferenceModel (inference.networking.x-k8s.io" in out
    assert "rule lora-request-canary ok" in out
    typo = tmp_path / "typo.yaml"
    typo.write_text((DEMO / "rule.yaml").read_text().replace("kind: CanaryRule", "kind: CanaryRul"))
    assert main(["rules", "validate", str(typo)]) == 1
    assert "kind: Input should be 'CanaryRule'" in capsys.readouterr().out


def test_rules_validate_strict_checks_secrets_and_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = fresh_demo(tmp_path)
    rule = work / "rule.yaml"
    rule.write_text(
        rule.read_text()
        + "  notify:\n"
        + "  - {type: webhook, url: {env: CA_STRICT_HOOK}, secret: {file: "
        + str(tmp_path / "key")
        + "}}\n"
        + "  - {type: slack, webhookUrl: {env: CA_STRICT_SLACK}}\n"
    )
    manifest = work / "inferencemodel.yaml"
    manifest.write_text(manifest.read_text().replace("modelName: lora-request", "modelName: x"))
    monkeypatch.delenv("CA_STRICT_HOOK", raising=False)
    monkeypatch.delenv("CA_STRICT_SLACK", raising=False)
    capsys.readouterr()
    assert main(["rules", "validate", str(rule)]) == 0  # the syntax is fine
    capsys.readouterr()
    assert main(["rules", "validate", "--strict", str(rule)]) == 1
    out = capsys.readouterr().out
    key = tmp_path / "key"
    missing = f"env CA_STRICT_HOOK, env CA_STRICT_SLACK, file {key}"
    assert f"secrets not set or not readable: {missing}" in out
    assert "target.file:" in out and "lora-request" in out
    assert "embedded mode only" in out and "rule lora-request-canary ok" not in out
    monkeypatch.setenv("CA_STRICT_HOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("CA_STRICT_SLACK", "http://127.0.0.1:9/slack")
    key.write_text("k")
    manifest.write_text(manifest.read_text().replace("modelName: x", "modelName: lora-request"))
    assert main(["rules", "validate", "--strict", str(rule)]) == 0
    out = capsys.readouterr().out
    assert "rule lora-request-canary ok" in out and "http://127.0.0.1:9" not in out


def test_rules_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "canary-analyzer CanaryRule"
    assert "minStepDuration" in json.dumps(schema)


def test_run_demo_mode_shows_progress_and_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "START" in out and "ADVANCE" in out and "PROMOTE" in out
    assert "lora-request-canary: Succeeded at 100% canary" in out
    assert "step 1/4  10%" in out and "ttft x" in out
    assert (tmp_path / "inferencemodel.yaml").exists()
    # status reads the state back from the object
    assert main(["status", "--rules", str(tmp_path / "rule.yaml")]) == 0
    status = capsys.readouterr().out
    assert re.search(r"lora-request-canary\s+Succeeded\s+4/4\s+100%\s+tweet-summary=20", status)
    assert "last: promote" in status


@pytest.mark.slow
def test_installed_entry_point_reads_stdin(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    work = fresh_demo(tmp_path)
    log = simulated_log(canary_ttft_factor=1.4)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "run",
            "--rules",
            str(work / "rule.yaml"),
            "--events",
            "-",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ],
        input=log.read_bytes(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"ROLLBACK" in proc.stdout
    decisions = [
        json.loads(line) for line in proc.stderr.splitlines() if b'"rollout_decision"' in line
    ]
    assert [d["action"] for d in decisions] == ["start", "hold", "rollback"]
    assert decisions[-1]["checks"][0]["name"] == "ttft"


@pytest.mark.slow
def test_a_live_pipe_is_judged_before_it_ends(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """1,500 lines, then the writer pauses with the pipe open: the judgments on them come out
    then, not after thousands more lines or at the end of the input."""
    work = fresh_demo(tmp_path)
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines(keepends=True)[:1500]
    argv = ["run", "--rules", str(work / "rule.yaml"), "--events", "-"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"".join(lines))
    proc.stdin.flush()
    seen: list[bytes] = []
    judged = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if b"step 1/4" in line:
                judged.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The pipe stays open while waiting; the wait only guards against a hang.
        assert judged.wait(120), b"".join(seen).decode()
        assert proc.poll() is None  # still reading: the judgment did not wait for the end
    finally:
        proc.stdin.close()
        proc.wait(60)
    reader.join(10)
    assert proc.returncode == 0
    assert any(b"START" in line for line in seen)


def test_gzip_logs_are_read(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log = simulated_log(canary_ttft_factor=1.4)
    gz = tmp_path / "log.jsonl.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    work = fresh_demo(tmp_path / "w")
    doc = replay(work / "rule.yaml", gz, capsys=capsys)
    assert doc["rollouts"][0]["phase"] == "RolledBack"
    assert doc["events"]["accepted"] == len(log.read_bytes().splitlines())


def test_invalid_rules_refuse_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = fresh_demo(tmp_path) / "rule.yaml"
    bad.write_text(bad.read_text().replace("steps: [10, 25, 50, 100]", "steps: [10, 25]"))
    code = main(["replay", "--rules", str(bad), "--events", str(DEMO / "access-log.jsonl.gz")])
    assert code == 2
    assert "spec.steps: the last step must be 100" in capsys.readouterr().err


def test_input_errors_are_one_line_with_the_fix_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = str(DEMO / "rule.yaml")
    missing = str(tmp_path / "nope.jsonl")
    cases = [
        (["replay", "--rules", rule, "--events", missing], "no such file"),
        (["run", "--rules", rule, "--events", missing], "no such file"),
        (["run", "--rules", rule, "--events", str(tmp_path)], "not a file"),
        (["run", "--events", missing], "--events needs --rules"),
    ]
    for argv, words in cases:
        assert _exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as usage:
        main(["run", "--log-level", "bogus"])
    assert usage.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    assert _exit_code(["replay", "--rules", rule, "--events", missing, "--log-level", "INFO"]) == 2


def _exit_code(argv: list[str]) -> object:
    try:
        return main(argv)
    except SystemExit as stop:  # refusals before any work exit like usage errors
        return stop.code


def test_backtests_gate_ci_and_say_what_was_judged(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    slow = simulated_log(canary_ttft_factor=1.4)
    doc = replay(work / "rule.yaml", slow, "--fail-on", "rollback", "--dry-run", capsys=capsys)
    assert doc["rollouts"][0]["phase"] == "RolledBack"
    assert doc["exit_code"] == 3 and doc["backtest_failed"] == ["lora-request-canary: RolledBack"]
    assert doc["dry_run"] is True
    # Dry run: the manifest is untouched, so the same log can gate again; in text, a banner.
    code = main(["replay", "--rules", str(work / "rule.yaml"), "--events", str(slow), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("DRY RUN: ")
    assert "every rollout finished by" in out and "the rest of the log was not read" in out
    assert "ignored" in out and "{" not in out.splitlines()[-1]  # counts, not a Python dict
    healthy = replay(work / "rule.yaml", DEMO / "access-log.jsonl.gz", capsys=capsys)
    assert healthy["rollouts"][0]["phase"] == "Succeeded" and healthy["exit_code"] == 0
    again = replay(
        work / "rule.yaml", DEMO / "access-log.jsonl.gz", "--fail-on", "any", capsys=capsys
    )
    assert again["exit_code"] == 0 and again["backtest_failed"] == []
    assert any("already finished (Succeeded)" in n for n in again["notes"])
    assert again["rollouts"][0]["decisions"] == []


def test_status_outputs_and_override_only_on_a_running_rollout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path)
    rule = str(work / "rule.yaml")
    override = ["override", "pause", "--rules", rule, "--rule", "lora-request-canary"]
    assert main(override) == 1  # nothing started yet
    assert "no rollout on its object yet" in capsys.readouterr().err
    assert main(["status", "--rules", rule, "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["phase"] == "NotStarted" and row["pending_command"] is None
    assert main(["run", "--rules", rule, "--events", str(DEMO / "access-log.jsonl.gz")]) == 0
    capsys.readouterr()
    assert main(override) == 1  # promoted: a command now would hit the next rollout
    assert "is Succeeded" in capsys.readouterr().err
    assert main(["status", "--rules", rule, "-o", "yaml"]) == 0
    text = capsys.readouterr().out
    assert "phase: Succeeded" in text and "canary_percent: 100" in text
    assert main(["status", "--rules", rule, "-o", "wide"]) == 0
    wide = capsys.readouterr().out
    assert re.search(r"RULE\s+PHASE\s+STEP\s+CANARY\s+AGE\s+COMMAND\s+WEIGHTS", wide)
    (work / "inferencemodel.yaml").unlink()
    assert main(["status", "--rules", rule]) == 1  # a rollout in Error exits non-zero
    assert "Error" in capsys.readouterr().out


def test_rules_validate_names_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["rules", "validate", str(missing)]) == 1
    out = capsys.readouterr().out
    assert f"{missing}: no such file or directory" in out and ":0:0" not in out


def test_every_option_is_described() -> None:
    """--help documents every option of every command (defaults are added by the formatter)."""
    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help is None and action.dest != "help":
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "canary-analyzer")
    assert missing == []


def test_run_refuses_a_kubeconfig_without_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--kubeconfig", "/nowhere", "--rules", "x.yaml", "--events", "-"]) == 2
    assert "--kubeconfig is for the cluster daemon (run --kafka, or run --rules alone" in (
        capsys.readouterr().err
    )


def test_override_choices_are_the_machines_commands() -> None:
    """cli.py spells the commands out (importing the state machine would slow --help down):
    they must stay the machine's."""
    from analyzer.rollout.machine import COMMANDS  # noqa: PLC0415

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["override"]._actions if a.dest == "action")
    assert tuple(action.choices or ()) == COMMANDS


def test_the_demo_leaves_no_temporary_folder_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "analyzer", *argv]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    for argv in (["simulate", "--max-duration", "30"], ["run"]):
        done = cli(*argv)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"copied to {scratch}" in done.stdout and "removed at exit" in done.stdout
        assert list(scratch.iterdir()) == []  # before: one canary-analyzer-demo-* per run
    kept = tmp_path / "kept"
    done = cli("simulate", "--max-duration", "30", "--workdir", str(kept))
    assert done.returncode == 0 and (kept / "rule.yaml").is_file()


def test_the_daemon_in_a_pod_refuses_a_rule_with_target_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the pod there is no manifest to route (the chart's ConfigMap holds rules only)."""
    work = fresh_demo(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("CANARY_ANALYZER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("CANARY_ANALYZER_KAFKA_TOPICS", "logs")
    code = main(["run", "--kafka", "--rules", str(work / "rule.yaml"), "--http-port", "0"])
    err = capsys.readouterr().err
    assert code != 0
    assert "rule lora-request-canary: target.file is for embedded mode" in err
    assert "routes InferenceModel default/inferencemodel-sample itself: remove file:" in err


def test_the_terminal_reads_in_event_time_order(
    tmp_path: Path, simulated_log: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Decisions are announced between judgments: each is printed before the next judgment,
    not after the batch it was made in (a START used to follow a minute of judgments)."""
    work = fresh_demo(tmp_path)
    log = simulated_log(canary_ttft_factor=1.0)
    capsys.readouterr()  # the simulation that recorded the log printed too
    assert main(["run", "--rules", str(work / "rule.yaml"), "--events", str(log)]) == 0
    out = capsys.readouterr().out
    stamps = re.findall(r"(?m)^(\d\d:\d\d:\d\d)  ", out)
    assert len(stamps) > 20 and stamps == sorted(stamps)
    assert out.index(" START ") < out.index(" step 1/4 ")
