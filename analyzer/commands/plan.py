"""``canary-analyzer rules plan``: size a rollout's steps for its traffic before starting it.

The traffic, the spread of log TTFT and the error rate come from the options or from a recorded
access log (the rule's own field map reads it); the estimates are analyzer/analysis/plan.py's.

Must not: start a rollout, write a manifest or talk to a cluster.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from analyzer.analysis.plan import RulePlan, plan_rule
from analyzer.config import RuleSpec, load_rules
from analyzer.events.lineparser import EventParser


def _from_log(spec: RuleSpec, path: Path) -> tuple[float, float, float]:
    """(requests/s, sigma of log TTFT, error rate) of the baseline adapters in ``path``."""
    parser = EventParser(spec.events, [spec.model])
    times: list[float] = []
    ttft: list[float] = []
    errors = requests = 0
    baseline = frozenset(spec.baseline)
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            event = parser.parse_line(line)
            if event is None:
                continue
            times.append(event.timestamp)
            if event.target in baseline:
                requests += 1
                errors += event.is_error
                if event.ttft and not event.is_error:
                    ttft.append(event.ttft)
    span = max(times) - min(times) if times else 0.0
    if span <= 0 or len(ttft) < 20:
        raise ValueError(
            f"{path}: too few events of model {spec.model} to plan from (found {len(times)}, "
            f"{len(ttft)} baseline TTFTs); check the rule's events field map, or pass --rps"
        )
    return len(times) / span, float(np.std(np.log(ttft))), errors / max(1, requests)


def render(plan: RulePlan, spec: RuleSpec) -> str:
    a = spec.analysis
    out = [
        f"at {plan.rps:g} req/s ({'; '.join(c.name for c in spec.checks)}), warm-up "
        f"{a.warmup:g} s, minSamples {a.min_samples}, advanceOn {a.advance_on}:",
        f"{'step':>6} {'canary req/s':>12} {'needs':>8}  {'waits for':<16} "
        f"{'detects x' + format(plan.regression, '.2f'):>14}",
    ]
    for s in plan.steps:
        detect = "never" if math.isinf(s.detect_seconds) else f"{s.detect_seconds:.0f} s"
        out.append(
            f"{s.percent:>5}% {s.canary_rps:>12.2f} {s.seconds:>6.0f} s  {s.waits_for:<16} "
            f"{detect:>14}"
        )
    out.append(
        f"total about {plan.total_seconds:.0f} s (a typical rollout); "
        f"suggested maxStepDuration: {plan.suggested_max_step:.0f}s "
        f"(the rule has {a.max_step_duration:.0f}s)"
    )
    out.extend(f"warning: {w}" for w in plan.warnings)
    return "\n".join(out)


def cmd_rules_plan(args: argparse.Namespace) -> int:
    rules, errors = load_rules([Path(args.rule)])
    for err in errors:
        print(err, file=sys.stderr)
    if errors or not rules:
        print(f"error: no valid rule in {args.rule}", file=sys.stderr)
        return 1
    spec = rules[0].rule.spec
    rps, sigma, error_rate = args.rps, args.sigma, args.error_rate
    if args.events:
        try:
            rps, sigma, error_rate = _from_log(spec, Path(args.events))
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if rps is None or rps <= 0:
        print("error: give the traffic with --rps N (requests/s) or --events LOG", file=sys.stderr)
        return 2
    plan = plan_rule(spec, rps, sigma, error_rate, args.regression)
    print(render(plan, spec))
    return 1 if plan.warnings else 0
