"""Start-up time of the command line, as an SRE runs it: the installed ``canary-analyzer``.

Best of N runs of each command (a process each, wall time), next to the bare interpreter's
start, against the targets: ``--help`` <= 0.3 s, ``rules validate`` <= 0.6 s.
Run from the repository root: python -m bench.startup [RUNS]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "canary-analyzer"
COMMANDS = (
    ("python -c pass", [sys.executable, "-c", "pass"], None),
    ("--help", [str(CLI), "--help"], 0.3),
    ("rules validate rules/", [str(CLI), "rules", "validate", str(ROOT / "rules")], 0.6),
    (
        "rules validate demo rule",
        [str(CLI), "rules", "validate", str(ROOT / "analyzer/demo/rule.yaml")],
        0.6,
    ),
)


def best_of(cmd: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"| command | best of {runs} (s) | target (s) | share of target |")
    print("|---|---|---|---|")
    for name, cmd, target in COMMANDS:
        t = best_of(cmd, runs)
        share = f"{t / target:.2f}" if target else "-"
        print(f"| `{name}` | {t:.3f} | {target or '-'} | {share} |", flush=True)


if __name__ == "__main__":
    main()
