"""Detection benchmark: false rollbacks and time to rollback of five canary judges.

Simulates per-request traffic at one step (10% canary share, 50 requests/s unless the scenario
says otherwise; lognormal TTFT, median 250 ms, sigma 0.5; 0.5% errors) and runs, on the same
simulated streams, in one run:
  1. canary-analyzer sequential (anytime-valid mSPRT on Mann-Whitney and on the error rate,
     Holm across the two checks), tolerance 0 and tolerance 10%, judged every 100 requests
     (--look-every) from 20 canary samples on, rolling back at the first failing judgment;
  2. canary-analyzer fixed-horizon (the same tests' fixed p-values), judged the same way;
  3. Kayenta-style: per-interval aggregates (1-minute intervals), two-sided Mann-Whitney at 98%
     confidence with a +/-25% effect bound, TTFT and error rate, fail on the first bad interval;
  4. Flagger-style: per 1-minute interval, canary p99 TTFT above 1.25x the baseline's p99 or
     error rate above 1% is a failed check; 2 failed checks roll back;
  5. oracle SPRT: Wald's test knowing both true distributions (H1 = the scenario's canary; for
     A/A, a 1.2x canary) - the floor on samples needed.
A run lasts 40,000 requests or 20 minutes, whichever is first. All judges use alpha 1%
(the oracle: alpha = beta = 1%).

Run: python bench/detection.py [--runs-aa 500] [--runs 200] [--seed 1] [--look-every 100]
Prints a table per scenario and writes bench/detection.png (median samples to rollback vs effect).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from analyzer.stats.histogram import LogHistogram
from analyzer.stats.mannwhitney import shifted_buckets, weighted_mannwhitney
from analyzer.stats.rates import compare_rates
from analyzer.stats.sequential import (
    DEFAULT_TAU_SHIFT,
    mixture_p,
    sequential_rate_p,
    shift_information,
)

ALPHA = 0.01
SHARE = 0.10
MEDIAN, SIGMA = 0.25, 0.5
LOOK = 100  # requests between two judgments of our judges: 2 s at 50 req/s
INTERVAL = 3000  # Kayenta / Flagger interval at 50 rps: one minute
MAX_REQUESTS, MAX_SECONDS = 40_000, 1200.0
LAYOUT = LogHistogram().layout
TAU = DEFAULT_TAU_SHIFT


@dataclass(frozen=True)
class Scenario:
    name: str
    factor: float = 1.0
    heavy: bool = False
    tail_extra: float = 0.0
    err_canary: float = 0.005
    err_baseline: float = 0.005
    rps: float = 50.0
    null: bool = False

    @property
    def requests(self) -> int:
        return int(min(MAX_REQUESTS, MAX_SECONDS * self.rps))


SCENARIOS = [
    Scenario("A/A", null=True),
    Scenario("A/A heavy tail", heavy=True, null=True),
    Scenario("TTFT x1.05", factor=1.05),
    Scenario("TTFT x1.2", factor=1.2),
    Scenario("TTFT x1.5", factor=1.5),
    Scenario("tail +2s on 2%", tail_extra=2.0),
    Scenario("errors 0.5%->3%", err_canary=0.03),
    Scenario("x1.2 low traffic (5 rps)", factor=1.2, rps=5.0),
]


@dataclass
class Stream:
    canary: np.ndarray  # bool per request
    ttft: np.ndarray
    error: np.ndarray


def draw(s: Scenario, rng: np.random.Generator) -> Stream:
    n = s.requests
    canary = rng.random(n) < SHARE
    ttft = MEDIAN * np.exp(SIGMA * rng.standard_normal(n))
    if s.heavy:
        ttft = np.where(rng.random(n) < 0.02, ttft * 4, ttft)
    ttft = np.where(canary, ttft * s.factor, ttft)
    if s.tail_extra:
        ttft = np.where(canary & (rng.random(n) < 0.02), ttft + s.tail_extra, ttft)
    error = rng.random(n) < np.where(canary, s.err_canary, s.err_baseline)
    return Stream(canary, ttft, error)


# -- oracle --


def _logpdf_log(logx: np.ndarray, shift: float, heavy: bool) -> np.ndarray:
    base = sps.norm.logpdf(logx, math.log(MEDIAN) + shift, SIGMA)
    if not heavy:
        return base
    tail = sps.norm.logpdf(logx, math.log(MEDIAN) + shift + math.log(4), SIGMA)
    return np.logaddexp(np.log(0.98) + base, np.log(0.02) + tail)


def oracle_llr(s: Scenario, x: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Per-canary-request log-likelihood ratio H1 (the scenario) vs H0 (the baseline)."""
    factor = 1.2 if s.null else s.factor
    logx = np.log(x)
    h0 = _logpdf_log(logx, 0.0, s.heavy)
    if s.tail_extra:
        inner = np.log(np.clip(x - s.tail_extra, 1e-12, None))
        shifted = np.where(
            x > s.tail_extra, _logpdf_log(inner, 0.0, s.heavy) + logx - inner, -np.inf
        )
        h1 = np.logaddexp(np.log(0.98) + h0, np.log(0.02) + shifted)
    else:
        h1 = _logpdf_log(logx, math.log(factor), s.heavy)
    llr = np.where(err, 0.0, h1 - h0)
    pb, pc = s.err_baseline, s.err_canary
    return llr + np.where(err, math.log(pc / pb), math.log((1 - pc) / (1 - pb)))


def oracle(s: Scenario, st: Stream) -> int | None:
    c = st.canary
    cum = np.cumsum(oracle_llr(s, st.ttft[c], st.error[c]))
    upper, lower = math.log((1 - ALPHA) / ALPHA), math.log(ALPHA / (1 - ALPHA))
    up = np.flatnonzero(cum >= upper)
    down = np.flatnonzero(cum <= lower)
    if up.size and (not down.size or up[0] < down[0]):
        return int(up[0]) + 1
    return None


# -- canary-analyzer judges (sequential and fixed) --


def _ours(st: Scenario, stream: Stream) -> dict[str, int | None]:
    """First canary count at which each of our judges fails, judged every LOOK requests."""
    names = ["sequential tol 0", "sequential tol 10%", "fixed-horizon tol 0"]
    out: dict[str, int | None] = dict.fromkeys(names)
    running = {n: [1.0, 1.0] for n in names}
    hb = np.zeros(LAYOUT.size, dtype=np.int64)
    hc = np.zeros(LAYOUT.size, dtype=np.int64)
    ok = ~stream.error
    idx = LAYOUT.index(stream.ttft)
    nb = nc = eb = ec = 0
    for end in range(LOOK, st.requests + 1, LOOK):
        sl = slice(end - LOOK, end)
        c, e, o = stream.canary[sl], stream.error[sl], ok[sl]
        hb += np.bincount(idx[sl][~c & o], minlength=LAYOUT.size)
        hc += np.bincount(idx[sl][c & o], minlength=LAYOUT.size)
        nb += int((~c).sum())
        nc += int(c.sum())
        eb += int((e & ~c).sum())
        ec += int((e & c).sum())
        if nc < 20 or nb < 20:
            continue
        rate = compare_rates(eb, nb, ec, nc, tolerance=0.0, alpha=ALPHA)
        ci, bi = np.flatnonzero(hc), np.flatnonzero(hb)
        shift_p: dict[float, tuple[float, float]] = {}
        for tol in (0.0, 0.1):
            bv, bw = shifted_buckets(bi, hb[bi], 1 + tol, LAYOUT.log_gamma)
            _, z, p = weighted_mannwhitney(ci.astype(float), hc[ci], bv, bw, "greater")
            seq = mixture_p(z, shift_information(int(hb.sum()), int(hc.sum())), TAU)
            shift_p[tol] = (p, seq)
        candidates = {
            "sequential tol 0": (shift_p[0.0][1], sequential_rate_p(rate, 0.0)),
            "sequential tol 10%": (shift_p[0.1][1], sequential_rate_p(rate, 0.0)),
            "fixed-horizon tol 0": (shift_p[0.0][0], rate.p_value),
        }
        for name, (p_lat, p_err) in candidates.items():
            if out[name] is not None:
                continue
            run = running[name]
            if name.startswith("sequential"):  # always-valid p: keep the running minimum
                run[0], run[1] = min(run[0], p_lat), min(run[1], p_err)
            else:
                run[0], run[1] = p_lat, p_err
            if min(run) * 2 < ALPHA:  # Holm's first step over the two checks
                out[name] = nc
        if all(v is not None for v in out.values()):
            break
    return out


def kayenta(st: Scenario, stream: Stream) -> int | None:
    interval = max(LOOK, int(INTERVAL * st.rps / 50.0))
    seen = 0
    for end in range(interval, st.requests + 1, interval):
        sl = slice(end - interval, end)
        c, t, e = stream.canary[sl], stream.ttft[sl], stream.error[sl]
        seen += int(c.sum())
        metrics = (
            (t[c & ~e], t[~c & ~e], np.median),  # latency: ratio of medians
            (e[c].astype(float), e[~c].astype(float), np.mean),  # errors: ratio of rates
        )
        for can, base, centre in metrics:
            if can.size < 5 or base.size < 5:
                continue
            p = sps.mannwhitneyu(can, base, alternative="two-sided").pvalue
            ratio = float(centre(can)) / max(float(centre(base)), 1e-9)
            if p < 0.02 and ratio > 1.25:
                return seen
    return None


def flagger(st: Scenario, stream: Stream, p99_limit: float) -> int | None:
    interval = max(LOOK, int(INTERVAL * st.rps / 50.0))
    failed = seen = 0
    for end in range(interval, st.requests + 1, interval):
        sl = slice(end - interval, end)
        c, t, e = stream.canary[sl], stream.ttft[sl], stream.error[sl]
        seen += int(c.sum())
        if not c.any():
            continue
        bad = np.quantile(t[c & ~e], 0.99) > p99_limit if (c & ~e).any() else False
        bad = bad or e[c].mean() > 0.01
        failed += bool(bad)
        if failed >= 2:
            return seen
    return None


@dataclass
class Tally:
    samples: list[int] = field(default_factory=list)
    runs: int = 0

    def add(self, n: int | None) -> None:
        self.runs += 1
        if n is not None:
            self.samples.append(n)


def run(s: Scenario, runs: int, seed: int) -> dict[str, Tally]:
    rng = np.random.default_rng(seed)
    baseline_p99 = float(np.quantile(draw(Scenario("ref", heavy=s.heavy), rng).ttft, 0.99))
    tallies: dict[str, Tally] = {}
    judges: dict[str, Callable[[Stream], int | None]] = {
        "Kayenta-style": lambda st: kayenta(s, st),
        "Flagger-style": lambda st: flagger(s, st, 1.25 * baseline_p99),
        "oracle SPRT": lambda st: oracle(s, st),
    }
    for _ in range(runs):
        stream = draw(s, rng)
        for name, n in _ours(s, stream).items():
            tallies.setdefault(name, Tally()).add(n)
        for name, judge in judges.items():
            tallies.setdefault(name, Tally()).add(judge(stream))
    return tallies


def _median(t: Tally) -> float:
    return float(np.median(t.samples)) if t.samples else math.nan


def report(s: Scenario, tallies: dict[str, Tally]) -> list[str]:
    oracle_median = _median(tallies["oracle SPRT"])
    canary_rps = s.rps * SHARE
    lines = [
        f"### {s.name} ({s.rps:g} req/s, {canary_rps:g} canary req/s, "
        f"{tallies['oracle SPRT'].runs} runs)",
        "",
        "| judge | "
        + ("false rollbacks" if s.null else "rolled back")
        + " | median canary samples | p95 | median seconds | vs oracle |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in tallies.items():
        rate = len(t.samples) / t.runs
        med = _median(t)
        p95 = float(np.quantile(t.samples, 0.95)) if t.samples else math.nan
        ratio = (
            med / oracle_median if not (math.isnan(oracle_median) or math.isnan(med)) else math.nan
        )
        lines.append(
            f"| {name} | {rate:.1%} | {med:.0f} | {p95:.0f} | {med / canary_rps:.0f} | "
            f"{ratio:.2f}x |".replace("nan", "–")
        )
    return lines


def plot(results: dict[str, dict[str, Tally]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effects = [("TTFT x1.05", 1.05), ("TTFT x1.2", 1.2), ("TTFT x1.5", 1.5)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for judge in results["TTFT x1.2"]:
        xs, ys = [], []
        for name, x in effects:
            t = results[name][judge]
            if len(t.samples) >= t.runs / 2:
                xs.append(x)
                ys.append(_median(t))
        ax.plot(xs, ys, marker="o", label=judge)
    ax.set_xlabel("canary TTFT / baseline TTFT")
    ax.set_ylabel("median canary requests to rollback")
    ax.set_yscale("log")
    ax.set_title("Detection time vs effect size (10% canary share)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    global LOOK  # noqa: PLW0603 - the benchmark's one knob, set once before any run
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs-aa", type=int, default=500)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--look-every", type=int, default=LOOK, help="requests between judgments")
    ap.add_argument("--plot", default=str(Path(__file__).with_name("detection.png")))
    args = ap.parse_args()
    LOOK = args.look_every
    t0 = time.perf_counter()
    results: dict[str, dict[str, Tally]] = {}
    for i, s in enumerate(SCENARIOS):
        results[s.name] = run(s, args.runs_aa if s.null else args.runs, args.seed + i)
        print("\n".join(report(s, results[s.name])) + "\n", flush=True)
    plot(results, Path(args.plot))
    print(f"plot: {args.plot}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
