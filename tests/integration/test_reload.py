"""Rules picked up, changed and removed while running; a bad file never stops good rules."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer.analysis.judge import Verdict
from analyzer.config import LoadedRule
from analyzer.notify.base import NoopNotifier
from analyzer.rollout.state import RolloutState, annotation_key
from analyzer.routers.factory import make_router
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.runtime.reload import RuleDirectory
from analyzer.runtime.wiring import build_controllers, load_rule_files, swap_controllers
from tests.conftest import DEMO, fresh_demo


def _configmap_swap(mount: Path, files: dict[str, str], generation: int) -> None:
    """What the kubelet does: write a new timestamped dir, swap ..data to it atomically."""
    data = mount / f"..2026_11_26_{generation}"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, mount / "..data")
    for name in files:
        link = mount / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def test_configmap_updates_are_picked_up_and_bad_ones_refused(tmp_path: Path) -> None:
    mount = tmp_path / "rules"
    mount.mkdir()
    good = (
        (DEMO / "rule.yaml")
        .read_text()
        .replace("file: inferencemodel.yaml", f"file: {tmp_path}/inferencemodel.yaml")
    )
    _configmap_swap(mount, {"rule.yaml": good}, 1)
    rules = RuleDirectory([mount])
    first = rules.poll()
    assert first is not None and [r.name for r in first] == ["lora-request-canary"]
    assert rules.poll() is None  # nothing changed
    _configmap_swap(mount, {"rule.yaml": good.replace("minSamples: 200", "minSamples: 300")}, 2)
    second = rules.poll()
    assert second is not None and second[0].rule.spec.analysis.min_samples == 300
    _configmap_swap(
        mount, {"rule.yaml": good.replace("steps: [10, 25, 50, 100]", "steps: [10]")}, 3
    )
    assert rules.poll() is None  # refused ...
    assert rules.errors and "steps" in rules.errors[0].field
    assert rules.current == second  # ... and the last good rules keep running
    _configmap_swap(mount, {}, 4)  # emptied: refused too, not taken as "stop every rollout"
    assert rules.poll() is None
    assert rules.errors and "no rules found" in rules.errors[0].message
    assert rules.current == second


def test_engine_swaps_rules_while_running(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    work_a = fresh_demo(tmp_path / "a")
    work_b = fresh_demo(tmp_path / "b")
    rule_b = work_b / "rule.yaml"
    rule_b.write_text(rule_b.read_text().replace("name: lora-request-canary", "name: second"))
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()

    def controller(rule: Path) -> RolloutController:
        loaded = RuleDirectory([rule]).poll()
        assert loaded is not None
        item: LoadedRule = loaded[0]
        return RolloutController(item, make_router(item), NoopNotifier())

    async def go() -> tuple[RolloutController, RolloutController, int]:
        a = controller(work_a / "rule.yaml")
        engine = Engine([a])
        third = len(lines) // 3
        for line in lines[:third]:
            await engine.feed_lines([line])
        b = controller(rule_b)  # a second rule appears (same model, another object)
        await engine.set_controllers([a, b])
        assert b.state is not None and b.state.phase == "Progressing"
        for line in lines[third : 2 * third]:
            await engine.feed_lines([line])
        await engine.set_controllers([b])  # the first rule is removed
        for line in lines[2 * third :]:
            await engine.feed_lines([line])
        return a, b, engine.stats.accepted

    a, b, accepted = asyncio.run(go())
    assert accepted == len(lines)  # counts survive the swaps
    assert a.state is not None and a.state.phase == "Progressing"  # stopped where it was
    assert b.decisions[0].action == "start" and b.state is not None
    assert b.state.step > 0  # the new rule ran and advanced


def test_a_reload_of_the_same_rollout_keeps_its_evidence_and_retires_the_old_controller(
    tmp_path: Path, simulated_log: Callable[..., Path]
) -> None:
    """An edit that keeps the revision (maxStepDuration here) mid-step: before, the new
    controller judged on post-reload events only (84/24 samples instead of 2,328/566) and the
    replaced one, still watching, paused the rollout at the next weight change."""
    lines = simulated_log(canary_ttft_factor=1.0).read_bytes().splitlines()

    async def go(reload_at: int | None) -> tuple[list[tuple[float, str, int, int]], Any]:
        work = fresh_demo(tmp_path / f"run-{reload_at}")
        rule = work / "rule.yaml"
        judged: list[tuple[float, str, int, int]] = []

        def listen(c: RolloutController, now: float, verdict: Verdict) -> None:
            ttft = next(r for r in verdict.checks if r.name == "ttft")
            judged.append((now, verdict.status, ttft.n_baseline, ttft.n_canary))

        controllers = build_controllers(load_rule_files([rule]), False, listen)
        engine = Engine(controllers)
        old = controllers[0]
        for i, line in enumerate(lines):
            if i == reload_at:
                rule.write_text(
                    rule.read_text().replace("maxStepDuration: 10m", "maxStepDuration: 11m")
                )
                swapped, problems = swap_controllers(
                    controllers, load_rule_files([rule]), False, listen, None, []
                )
                assert problems == [] and swapped[0] is not old
                await engine.set_controllers(swapped)
                controllers = swapped
                assert old.retired and not old.active
            await engine.feed_lines([line])
        await engine.finish()
        c = controllers[0]
        if c is not old:  # the new weights, seen by the replaced controller: it does nothing
            said = len(old.decisions)
            await old.on_object_change(await old.router.read(), engine.now or 0.0)
            assert len(old.decisions) == said
            assert c.state == RolloutState.loads(
                (await old.router.read()).annotations[annotation_key(c.name)]
            )
        return judged, [(d.at, d.action) for d in c.decisions]

    clean = asyncio.run(go(None))
    reloaded = asyncio.run(go(len(lines) // 3))
    assert reloaded == clean  # every judgment on the same evidence, the same decisions
    assert clean[1][-1][1] == "promote"
