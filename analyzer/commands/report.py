"""What a person reads on the terminal: judgment and decision lines, summaries, tables.

One module, so every command prints the same way; structured logs go to stderr (telemetry.py).

Must not: decide anything or write to a routed object.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from analyzer.analysis.checks import deciding_p
from analyzer.analysis.judge import Verdict
from analyzer.events.access import ParseStats
from analyzer.runtime.controller import RolloutController


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def weights(targets: Sequence[tuple[str, int | None]]) -> str:
    return " ".join(f"{n}={'-' if w is None else w}" for n, w in targets)


def check_brief(c: dict[str, Any]) -> str:
    eff, ci = c.get("effect"), c.get("ci")
    if eff is None:
        shown = "n/a"
    elif c.get("effect_kind") == "ratio":
        shown = f"x{eff:.3f}" + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")
    else:
        shown = f"{eff:+.4f}" + (f" [{ci[0]:+.3f},{ci[1]:+.3f}]" if ci else "")
    p = deciding_p(c)
    ptxt = f" p={p:.2g}" if p is not None else ""
    return f"{c['name']} {shown}{ptxt} {c['status']}"


class Progress:
    """Live lines a person can follow: one per judgment, and a block per decision."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def judgment(self, c: RolloutController, now: float, verdict: Verdict) -> None:
        s = c.state
        w = c.windows
        if s is None or w is None:
            return
        elapsed = now - s.step_started_at
        checks = "  ".join(check_brief(r.to_json()) for r in verdict.checks)
        warm, status = "", str(verdict.status)
        if now <= w.evidence_from:  # the step's first seconds: counted, not yet evidence
            warm = f"  warm-up {w.warm_baseline.requests}/{w.warm_canary.requests}"
            status = f"warming up ({w.evidence_from - now:.0f}s left)"
        print(
            f"{clock(now)}  {c.name}  step {s.step + 1}/{len(s.steps)} {s.canary_percent:>3}%"
            f"  {elapsed:>4.0f}s  n={w.baseline.requests}/{w.canary.requests}{warm}  {checks}"
            f"  => {status}",
            file=self.out,
            flush=True,
        )

    def decisions(self, c: RolloutController, start: int) -> None:
        for n in c.announced[start:]:
            d = n.decision
            print(
                f"{clock(d.at)}  {c.name}  {d.action.upper():<8} {d.canary_percent}% canary: "
                f"{d.reason}",
                file=self.out,
            )
            if n.weights_after != n.weights_before:
                print(f"          weights: {weights(n.weights_after)}", file=self.out)
            self.out.flush()


class ProgressListener:
    """Judgments as they happen, decisions when flushed: a decision made before a judgment
    (the START of a rollout, another rule's step) is printed before it, so the terminal reads
    in event-time order."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seen: dict[str, int] = {}
        self.known: dict[str, RolloutController] = {}

    def __call__(self, c: RolloutController, now: float, verdict: Verdict) -> None:
        others = [k for name, k in self.known.items() if name != c.name]
        self.flush([*others, c])
        self.progress.judgment(c, now, verdict)

    def flush(self, controllers: Sequence[RolloutController]) -> None:
        for c in controllers:
            start = self.seen.get(c.name, 0)
            before = self.known.get(c.name)
            if (
                before is not None
                and before is not c
                and c.announced[:start] != before.announced[:start]
            ):
                start = 0  # a reload started a new rollout: its decisions are all new
            self.known[c.name] = c
            self.progress.decisions(c, start)
            self.seen[c.name] = len(c.announced)


def print_summary(rollouts: list[dict[str, Any]], out: TextIO) -> None:
    for r in rollouts:
        line = f"{r['name']}: {r['phase']}"
        if r["canary_percent"] is not None:
            line += f" at {r['canary_percent']}% canary"
        print(line, file=out)
        if r["error"]:
            print(f"  error: {r['error']}", file=out)
        print(f"  weights: {weights(list(r['weights'].items()))}", file=out)
        lost = r.get("unattributed") or {}
        if lost:
            named = ", ".join(f"{a or '(no adapter)'} {n}" for a, n in lost.items())
            print(f"  unattributed: {sum(lost.values())} lines ({named})", file=out)


def events_line(stats: ParseStats, elapsed: float | None = None) -> str:
    """Every line accounted for: accepted, ignored (other models), rejected by reason."""
    st = stats.to_json()
    reasons = ", ".join(f"{n} {r}" for r, n in st["rejected_by_reason"].items())
    line = f"events: {st['accepted']} accepted, {st['ignored']} ignored, {st['rejected']} rejected"
    if reasons:
        line += f" ({reasons})"
    if elapsed is not None:
        line += f" in {elapsed:.1f}s"
    return line


def print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    """Columns padded to their widest cell; the last column runs free."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1],
            file=out,
        )
