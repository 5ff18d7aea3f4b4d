"""Whole rollouts, closed loop: the product's own judge against Kayenta- and Flagger-style judges.

Each run is one rollout of the bundled demo rule (steps 10/25/50/100, minStepDuration 60 s,
minSamples 200, TTFT tolerance 10%, errors +1 point, tail +1.5 points above the pooled p99,
alpha 0.01, failureThreshold 2, warm-up 30 s) from a 50/50 InferenceModel, with the bench's own
gateway (bench/traffic.py). Every second of event time the gateway sends the requests of that
second, split by the canary share the judge last wrote, and the judge sees them:

  canary-analyzer  the product: Envoy JSON lines through ``Engine.feed_lines`` (the daemon's
                   parser and columns), ``RolloutController`` and the file router writing the
                   manifest; the gateway re-reads the manifest after every decision;
  kayenta-style    per step, 1-minute analysis of 10-second medians / error rates per group,
                   two-sided Mann-Whitney at 98% with a +/-25% effect bound; advance unless a
                   metric is significantly worse by more than 25% (pass = no harm shown);
  flagger-style    every minute, canary p99 TTFT above 1.25x the baseline's p99 before the
                   rollout, or canary errors above 1%, is a failed check; 2 failures roll back,
                   a good minute advances one step;
  oracle SPRT      (rollback side, TTFT and error scenarios at a 10% share) Wald's test of
                   "canary at the tolerance" against the true canary, knowing both
                   distributions, alpha = beta = 1%: the floor on canary samples to a rollback.

A run ends at promotion, rollback, or when the steps' maxStepDuration plus a minute have
passed (undecided). Reported per scenario, rate and judge: promoted / rolled back / undecided of
N runs, median and p90 seconds to promote and to roll back, median canary samples at rollback.

Run from the repository root:
    python -m bench.rollouts [--runs 20] [--rps 2,20,50] [--scenarios all] [--seed 1] [--jobs 2]
                             [--out outcomes.json] [--plot bench/rollouts.png]
``--plot`` needs matplotlib (``pip install .[bench]``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from ruamel.yaml import YAML
from scipy import stats as sps

from bench.traffic import BY_NAME, SCENARIOS, SIGMA, Gateway, Scenario, baseline_p99, lines

DEMO = Path(__file__).resolve().parent.parent / "analyzer" / "demo"
START = 1795662000.0
STEPS = (10, 25, 50, 100)
MIN_STEP = 60.0
RESULTS = ("promoted", "rolled back", "undecided")


@dataclass(frozen=True)
class Outcome:
    scenario: str
    rps: float
    judge: str
    result: str  # promoted | rolled back | undecided
    seconds: float
    canary_samples: int


def _canary_share(manifest: Path, canary: Sequence[str]) -> float:
    doc = YAML(typ="safe").load(manifest.read_text())
    weights = {t["name"]: t.get("weight", 1) for t in doc["spec"]["targetModels"]}
    total = sum(weights.values())
    return sum(w for n, w in weights.items() if n in canary) / total if total else 0.0


def _max_step(rps: float) -> float:
    """The step's maxStepDuration, as ``canary-analyzer rules plan`` sizes it for the rate."""
    from analyzer.analysis.plan import plan_rule
    from analyzer.config import load_rules

    loaded = load_rules([DEMO / "rule.yaml"])[0][0]
    return plan_rule(loaded.rule.spec, rps, SIGMA).suggested_max_step


ADVANCE_ON = "no-harm"
"""The rule's analysis.advanceOn (``--advance-on``): set before the worker processes fork."""


async def _product(scenario: Scenario, rps: float, seed: int, work: Path) -> Outcome:
    from analyzer.config import load_rules
    from analyzer.notify.base import NoopNotifier
    from analyzer.routers.factory import make_router
    from analyzer.runtime.controller import RolloutController
    from analyzer.runtime.engine import Engine

    for name in ("rule.yaml", "inferencemodel.yaml"):
        shutil.copyfile(DEMO / name, work / name)
    max_step = _max_step(rps)
    rule = (work / "rule.yaml").read_text()
    rule = rule.replace(
        "maxStepDuration: 10m", f"maxStepDuration: {int(max_step)}s\n    advanceOn: {ADVANCE_ON}"
    )
    (work / "rule.yaml").write_text(rule)
    loaded = load_rules([work / "rule.yaml"])[0][0]
    spec = loaded.rule.spec
    controller = RolloutController(loaded, make_router(loaded), NoopNotifier())
    engine = Engine([controller])
    manifest = work / "inferencemodel.yaml"
    gateway = Gateway(scenario, rps, seed, START)
    share = _canary_share(manifest, spec.canary)
    changed = started = START
    seen = 0
    canary_sent = 0
    t = START
    limit = START + len(STEPS) * max_step + 60
    while t < limit:
        sec = gateway.second(t, share, t - changed)
        canary_sent += int(sec.canary.sum())
        await engine.feed_lines(lines(sec, spec.model, spec.baseline, spec.canary))
        t += 1.0
        decisions = controller.decisions
        if len(decisions) == seen:
            continue
        seen = len(decisions)
        last = decisions[-1]
        if last.action == "start":
            started = last.at
        new = _canary_share(manifest, spec.canary)
        if new != share:
            share, changed = new, last.at
        if last.action in ("promote", "rollback"):
            result = "promoted" if last.action == "promote" else "rolled back"
            return Outcome(
                scenario.name, rps, _judge_name(), result, last.at - started, canary_sent
            )
    return Outcome(scenario.name, rps, _judge_name(), "undecided", t - started, canary_sent)


def _judge_name() -> str:
    return "canary-analyzer" if ADVANCE_ON == "no-harm" else f"canary-analyzer ({ADVANCE_ON})"


def _kayenta(scenario: Scenario, rps: float, seed: int) -> Outcome:
    gateway = Gateway(scenario, rps, seed, START)
    t, canary_sent, changed = START, 0, START
    for step in STEPS[:-1]:
        share = step / 100
        series: dict[str, list[list[float]]] = defaultdict(lambda: [[], []])
        for k in range(6):  # six 10-second intervals
            ttft: list[list[float]] = [[], []]
            errs = [[0, 0], [0, 0]]
            for _ in range(10):
                sec = gateway.second(t, share, t - changed)
                canary_sent += int(sec.canary.sum())
                for g, mask in ((0, ~sec.canary), (1, sec.canary)):
                    ttft[g].extend(sec.ttft[mask & ~sec.error].tolist())
                    errs[g][0] += int((mask & sec.error).sum())
                    errs[g][1] += int(mask.sum())
                t += 1
            del k
            for g in (0, 1):
                if ttft[g]:
                    series["ttft"][g].append(float(np.median(ttft[g])))
                if errs[g][1]:
                    series["errors"][g].append(errs[g][0] / errs[g][1])
        for metric, (base, can) in series.items():
            if len(base) < 3 or len(can) < 3:
                continue
            p = sps.mannwhitneyu(can, base, alternative="two-sided").pvalue
            mb, mc = float(np.median(base)), float(np.median(can))
            worse = mc > 1.25 * mb if metric == "ttft" else mc > 1.25 * mb + 1e-12
            if p < 0.02 and worse:
                return Outcome(
                    scenario.name, rps, "kayenta-style", "rolled back", t - START, canary_sent
                )
        changed = t
    return Outcome(scenario.name, rps, "kayenta-style", "promoted", t - START, canary_sent)


def _flagger(scenario: Scenario, rps: float, seed: int, p99_limit: float) -> Outcome:
    gateway = Gateway(scenario, rps, seed, START)
    t, canary_sent, changed, failures, step = START, 0, START, 0, 0
    limit = START + 3600
    while t < limit:
        share = STEPS[step] / 100
        ttft: list[float] = []
        errors = requests = 0
        for _ in range(60):
            sec = gateway.second(t, share, t - changed)
            canary_sent += int(sec.canary.sum())
            ttft.extend(sec.ttft[sec.canary & ~sec.error].tolist())
            errors += int((sec.canary & sec.error).sum())
            requests += int(sec.canary.sum())
            t += 1
        bad = (ttft and float(np.quantile(ttft, 0.99)) > p99_limit) or (
            requests and errors / requests > 0.01
        )
        if bad:
            failures += 1
            if failures >= 2:
                return Outcome(
                    scenario.name, rps, "flagger-style", "rolled back", t - START, canary_sent
                )
            continue
        step += 1
        changed = t
        if step == len(STEPS) - 1:
            return Outcome(scenario.name, rps, "flagger-style", "promoted", t - START, canary_sent)
    return Outcome(scenario.name, rps, "flagger-style", "undecided", t - START, canary_sent)


def _oracle(scenario: Scenario, rps: float, seed: int) -> Outcome | None:
    """Wald's SPRT on the canary's own samples at a 10% share: H0 at the tolerance."""
    rng = np.random.default_rng(seed)
    a = math.log(99.0)
    if scenario.factor > 1.1 and scenario.err_canary == 0.005:
        mu0, mu1 = math.log(1.1), math.log(scenario.factor)

        def llr(n: int) -> np.ndarray:
            x = mu1 + SIGMA * rng.standard_normal(n)
            return ((x - mu0) ** 2 - (x - mu1) ** 2) / (2 * SIGMA * SIGMA)
    elif scenario.err_canary > 0.015:
        p0, p1 = 0.015, scenario.err_canary

        def llr(n: int) -> np.ndarray:
            e = rng.random(n) < p1
            return np.where(e, math.log(p1 / p0), math.log((1 - p1) / (1 - p0)))
    else:
        return None
    s, n = 0.0, 0
    while -a < s < a:
        chunk = llr(64)
        for v in chunk:
            s += v
            n += 1
            if not -a < s < a:
                break
    result = "rolled back" if s >= a else "promoted"
    return Outcome(scenario.name, rps, "oracle SPRT", result, n / (rps * 0.1), n)


def _one(task: tuple[str, float, int, str]) -> Outcome | None:
    name, rps, seed, judge = task
    scenario = BY_NAME[name]
    if judge == "canary-analyzer":
        with tempfile.TemporaryDirectory() as tmp:
            return asyncio.run(_product(scenario, rps, seed, Path(tmp)))
    if judge == "kayenta-style":
        return _kayenta(scenario, rps, seed)
    if judge == "flagger-style":
        return _flagger(scenario, rps, seed, 1.25 * baseline_p99(scenario))
    return _oracle(scenario, rps, seed)


def _quantile(xs: list[float], q: float) -> str:
    return f"{np.quantile(xs, q):.0f}" if xs else "-"


def report(outcomes: Sequence[Outcome], runs: int) -> str:
    groups: dict[tuple[str, float, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.scenario, o.rps, o.judge)].append(o)
    order = {s.name: i for i, s in enumerate(SCENARIOS)}
    rows = [
        "| scenario | req/s | judge | promoted | rolled back | undecided | promote s "
        "(median/p90) | rollback s (median/p90) | canary samples at rollback (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups, key=lambda k: (order[k[0]], k[1], k[2])):
        os_ = groups[key]
        n = len(os_)
        by = {r: [o for o in os_ if o.result == r] for r in RESULTS}
        pro = [o.seconds for o in by["promoted"]]
        rb = [o.seconds for o in by["rolled back"]]
        samples = [float(o.canary_samples) for o in by["rolled back"]]
        rows.append(
            f"| {key[0]} | {key[1]:g} | {key[2]} | {len(by['promoted'])}/{n} | "
            f"{len(by['rolled back'])}/{n} | {len(by['undecided'])}/{n} | "
            f"{_quantile(pro, 0.5)} / {_quantile(pro, 0.9)} | "
            f"{_quantile(rb, 0.5)} / {_quantile(rb, 0.9)} | {_quantile(samples, 0.5)} |"
        )
    del runs
    return "\n".join(rows)


def plot(outcomes: Sequence[Outcome], path: Path) -> None:
    """Per scenario and judge: the share promoted (up) and rolled back (down), per rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judges = ["canary-analyzer", "kayenta-style", "flagger-style"]
    rates = sorted({o.rps for o in outcomes})
    fig, axes = plt.subplots(len(rates), 1, figsize=(12, 3.2 * len(rates)), sharex=True)
    for ax, rps in zip(np.atleast_1d(axes), rates, strict=True):
        for j, judge in enumerate(judges):
            pro, rb = [], []
            for s in SCENARIOS:
                mine = [
                    o
                    for o in outcomes
                    if o.rps == rps and o.judge == judge and o.scenario == s.name
                ]
                n = max(1, len(mine))
                pro.append(sum(o.result == "promoted" for o in mine) / n)
                rb.append(-sum(o.result == "rolled back" for o in mine) / n)
            x = np.arange(len(SCENARIOS)) + (j - 1) * 0.27
            ax.bar(x, pro, 0.27, label=f"{judge} promoted", color=f"C{j}")
            ax.bar(x, rb, 0.27, color=f"C{j}", alpha=0.45, hatch="//")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(f"{rps:g} req/s\nrolled back | promoted")
        ax.set_ylim(-1.05, 1.05)
        for k, s in enumerate(SCENARIOS):
            if not s.healthy:
                ax.axvspan(k - 0.45, k + 0.45, color="red", alpha=0.05)
    ax.set_xticks(np.arange(len(SCENARIOS)), [s.name for s in SCENARIOS], rotation=35, ha="right")
    np.atleast_1d(axes)[0].legend(ncol=3, fontsize=8, loc="upper right")
    fig.suptitle("Whole rollouts: share promoted (up) / rolled back (down); bad canaries shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rps", default="2,20,50")
    ap.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    ap.add_argument("--judges", default="canary-analyzer,kayenta-style,flagger-style,oracle")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="also write every run's outcome as JSON here")
    ap.add_argument("--plot", help="also draw the promoted/rolled-back shares here (matplotlib)")
    ap.add_argument("--advance-on", default="no-harm", choices=["no-harm", "non-inferiority"])
    args = ap.parse_args(argv)
    global ADVANCE_ON  # noqa: PLW0603 - read by the forked workers
    ADVANCE_ON = args.advance_on
    names = [s.name for s in SCENARIOS] if args.scenarios == "all" else args.scenarios.split(",")
    rates = [float(r) for r in args.rps.split(",")]
    judges = args.judges.split(",")
    tasks = [
        (name, rps, args.seed * 100_003 + i, judge)
        for name in names
        for rps in rates
        for judge in judges
        for i in range(args.runs)
    ]
    began = time.perf_counter()
    outcomes: list[Outcome] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for k, o in enumerate(pool.imap_unordered(_one, tasks, chunksize=1), 1):
            if o is not None:
                outcomes.append(o)
            if k % 100 == 0:
                print(
                    f"{k}/{len(tasks)} runs, {time.perf_counter() - began:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print(report(outcomes, args.runs))
    if args.out:
        Path(args.out).write_bytes(orjson.dumps([dataclasses.asdict(o) for o in outcomes]))
    if args.plot:
        plot(outcomes, Path(args.plot))
    print(
        f"\n{len(tasks)} runs, {args.jobs} processes, {time.perf_counter() - began:.0f} s, "
        f"seed {args.seed}: python -m bench.rollouts {' '.join(sys.argv[1:])}"
    )


if __name__ == "__main__":
    main()
