"""The backtest report, opened in a real headless Chromium (Debian's) through Playwright."""

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import Browser, sync_playwright

from analyzer.cli import main
from analyzer.commands.report import check_brief
from tests.conftest import DEMO, fresh_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# closed network refuses; the sandbox needs a user namespace a root CI runner does not give.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    # Entered after the replay, never around it (so not a fixture): the sync API runs an
    # event loop in this thread, and the replay runs its own with asyncio.run.
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _replay(rule: Path, events: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    argv = ["replay", "--rules", str(rule), "--events", str(events), "--json"]
    argv += ["--report", str(out / "report.html"), "--report-png", str(out / "png")]
    code = main(argv)
    doc = json.loads(capsys.readouterr().out)
    doc["exit_code"] = code
    return doc


def _not_blank(path: Path) -> None:
    with Image.open(path) as img:
        assert img.width >= 600 and img.height >= 200
        spread = ImageStat.Stat(img.convert("L")).stddev[0]
        assert spread > 10, f"{path} looks blank (grey-level stddev {spread:.1f})"


def _open(browser: Browser, page_file: Path, shot: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(shot), full_page=True)
    return page, errors, requests


@pytest.mark.slow
def test_a_rollback_report_renders_with_its_evidence(
    tmp_path: Path,
    simulated_log: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = fresh_demo(tmp_path / "w")
    doc = _replay(work / "rule.yaml", simulated_log(canary_ttft_factor=1.4), tmp_path, capsys)
    [rollout] = doc["rollouts"]
    assert rollout["phase"] == "RolledBack" and doc["exit_code"] == 0
    html_file = tmp_path / "report.html"
    assert doc["report"] == [
        str(html_file),
        str(tmp_path / "png" / f"{rollout['name']}.png"),
        str(tmp_path / "png" / "events.png"),
    ]
    with chromium() as browser:
        page, errors, requests = _open(browser, html_file, tmp_path / "shot.png")
        rows = page.locator("tr.decision")
        row_count = rows.count()
        last_row = rows.nth(row_count - 1).inner_text()
        text = page.inner_text("body")
        # Every figure decoded and laid out (a broken SVG has no natural size).
        sizes = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.naturalWidth, e.complete])"
        )
    assert errors == []
    # Self-contained: the figures are data URIs; nothing else is fetched.
    assert [u for u in requests if not u.startswith("data:")] == [html_file.as_uri()]
    assert row_count == len(rollout["decisions"])
    last = rollout["decisions"][-1]
    assert last["action"] == "rollback"
    assert last["reason"] in text
    ttft = next(c for c in last["checks"] if c["name"] == "ttft")
    assert ttft["status"] == "fail"
    assert check_brief(ttft) in last_row
    assert len(sizes) == 2 and all(w > 300 and done for w, done in sizes)
    _not_blank(tmp_path / "shot.png")
    for png in doc["report"][1:]:
        _not_blank(Path(png))


@pytest.mark.slow
def test_a_promoted_dry_run_report_shows_every_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path / "w")
    capsys.readouterr()
    events = DEMO / "access-log.jsonl.gz"
    argv = ["replay", "--rules", str(work / "rule.yaml"), "--events", str(events), "--dry-run"]
    assert main([*argv, "--report", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'r.html'}" in out and not (tmp_path / "png").exists()
    with chromium() as browser:
        page, errors, _ = _open(browser, tmp_path / "r.html", tmp_path / "shot.png")
        text = page.inner_text("body")
        actions = page.locator("tr.decision td:nth-child(3)").all_inner_texts()
    assert errors == []
    assert "DRY RUN" in text and "Succeeded" in text
    assert actions[0] == "START" and actions[-1] == "PROMOTE"
    assert actions.count("ADVANCE") >= 1


def test_a_report_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "analyzer.commands.plots", None)  # import raises
    work = fresh_demo(tmp_path)
    argv = [
        "replay",
        "--rules",
        str(work / "rule.yaml"),
        "--events",
        str(DEMO / "access-log.jsonl.gz"),
    ]
    assert main([*argv, "--report", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'canary-analyzer[report]'" in err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_simulate_writes_the_same_report_of_its_closed_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = fresh_demo(tmp_path / "w")
    capsys.readouterr()
    argv = ["simulate", "--rules", str(work / "rule.yaml"), "--canary-ttft-factor", "1.4"]
    argv += ["--seed", "3", "--json", "--report", str(tmp_path / "s.html")]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    [rollout] = doc["rollouts"]
    assert rollout["phase"] == "RolledBack" and doc["report"] == [str(tmp_path / "s.html")]
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert page.count('<tr class="decision">') == len(rollout["decisions"])
    assert f"rollout {rollout['name']}: RolledBack</h2>" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
