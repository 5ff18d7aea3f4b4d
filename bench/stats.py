"""Statistics performance: the judge's TTFT evidence vs scipy on raw samples, and window memory.

(1) For 10^4 .. 10^7 samples per group (lognormal TTFT, canary shifted so p lands mid-range):
    time of scipy.stats.mannwhitneyu on the raw samples vs the evidence the TTFT check
    computes from its log-bucket histograms (``analyzer.stats.confidence``: the pairwise
    differences of one stratum and the confidence sequence over them, as a judgment does;
    folding is paid once per event and shown separately), their ratio, and
    |p_fixed - p_scipy| (the same statistic read at a fixed horizon, to show the binning's
    accuracy; the judge reads it sequentially).
(2) Resident memory of one step's windows (both groups, every metric) after folding 10^6 and
    10^7 events through the windows' fold, measured in one process.

Run: python bench/stats.py [--max-exp 7]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
from scipy import stats as sps

from analyzer.analysis.windows import StepWindows
from analyzer.events.columns import Columns, Labels
from analyzer.stats.confidence import PairwiseDifferences, shift_evidence
from analyzer.stats.histogram import LogHistogram
from analyzer.stats.sequential import DEFAULT_TAU_SHIFT


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def rank_tests(max_exp: int) -> None:
    print("| n per group | scipy raw (s) | judge evidence (s) | speed-up | fold (s) | |p diff| |")
    print("|---|---|---|---|---|---|")
    for exp in range(4, max_exp + 1):
        n = 10**exp
        rng = np.random.default_rng(exp)
        baseline = rng.lognormal(-1.4, 0.5, n)
        canary = rng.lognormal(-1.4, 0.5, n) * (1 + 0.6 / np.sqrt(n))
        t0 = time.perf_counter()
        ref = sps.mannwhitneyu(
            canary, baseline, alternative="greater", method="asymptotic", use_continuity=False
        )
        t_scipy = time.perf_counter() - t0
        t0 = time.perf_counter()
        hb, hc = LogHistogram(), LogHistogram()
        hb.add(baseline)
        hc.add(canary)
        t_fold = time.perf_counter() - t0
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            pairs = PairwiseDifferences.from_histograms(hb, hc)
            shift_evidence([pairs], 0.0, alpha=0.01, tau=DEFAULT_TAU_SHIFT)
        t_binned = (time.perf_counter() - t0) / reps
        fixed = shift_evidence([pairs], 0.0, alpha=0.01, tau=DEFAULT_TAU_SHIFT, kind="fixed")
        print(
            f"| 10^{exp} | {t_scipy:.3f} | {t_binned:.4f} | {t_scipy / t_binned:,.0f}x | "
            f"{t_fold:.3f} | {abs(fixed.p_harm - float(ref.pvalue)):.1e} |",
            flush=True,
        )


def _batch(rng: np.random.Generator, n: int, start: float) -> Columns:
    """n requests, alternately to the baseline and the canary adapter, one per millisecond."""
    labels = Labels()
    model, baseline, canary = labels["m"], labels["b"], labels["c"]
    ttft = rng.lognormal(-1.4, 0.5, n)
    return Columns(
        index=np.arange(n),
        timestamp=start + np.arange(n) * 1e-3,
        labels=labels,
        model=np.full(n, model, dtype=np.int32),
        target=np.where(np.arange(n) % 2 == 0, baseline, canary).astype(np.int32),
        is_error=np.zeros(n, dtype=bool),
        ttft=ttft,
        duration=ttft * 4,
        prompt_tokens=np.full(n, 200.0),
        completion_tokens=np.full(n, 50.0),
    )


def window_memory() -> None:
    """Through the windows' fold, as the engine folds a batch."""
    rng = np.random.default_rng(0)
    windows = StepWindows(frozenset({"b"}), frozenset({"c"}), 0.0)
    gc.collect()
    start = rss_mb()
    folded = 0
    marks = {10**6: 0.0, 10**7: 0.0}
    chunk = 200_000
    while folded < 10**7:
        batch = _batch(rng, chunk, 1.7e9 + folded * 1e-3)
        windows.fold(batch, np.arange(chunk))
        folded += chunk
        del batch
        if folded in marks:
            gc.collect()
            marks[folded] = rss_mb() - start
    print(
        f"window memory above start: {marks[10**6]:.1f} MB after 10^6 events, "
        f"{marks[10**7]:.1f} MB after 10^7 (growth {marks[10**7] - marks[10**6]:+.1f} MB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-exp", type=int, default=7)
    args = ap.parse_args()
    rank_tests(args.max_exp)
    window_memory()


if __name__ == "__main__":
    main()
