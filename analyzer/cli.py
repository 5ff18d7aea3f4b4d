"""Command line: parse the arguments, import the one command asked for, run it.

Only argparse is imported at start: ``--help`` and a usage error cost no heavy import, and
each command loads what it needs (analyzer/commands/).

Must not: hold logic beyond argument parsing; import a command module before it is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from analyzer import __version__
from analyzer.errors import SetupError

DESCRIPTION = (
    "Statistical canary rollouts for LoRA adapters on shared vLLM base models: judge the "
    "canary against the baseline from gateway access logs (and Prometheus), step its weight "
    "up, hold, promote or roll back, and explain each decision with its numbers."
)


EXAMPLES = """examples:
  canary-analyzer run                                  the bundled demo, no cluster
  canary-analyzer rules validate rules/
  canary-analyzer rules plan rules/sql-lora-v2.yaml --rps 20
  canary-analyzer replay --rules rule.yaml --events gateway.jsonl.gz --fail-on rollback
  canary-analyzer replay --rules rule.yaml --events gateway.jsonl.gz --report backtest.html
  kubectl logs -f deploy/gateway | canary-analyzer run --rules rule.yaml --events -
  canary-analyzer run --kafka --rules /etc/canary-analyzer/rules   the cluster daemon
  canary-analyzer status --rules rules/ -o wide

exit status: 0 done, 1 a rollout could not run or was refused, 2 invalid rules or usage,
3 a backtest failed its --fail-on"""


MAX_EVENT_SKEW = 600.0
"""The default of --max-event-skew: events/skew.py's ``DEFAULT_MAX_SKEW`` (a test keeps them
equal; the CLI does not import numpy to show its help)."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port_default() -> int:
    text = os.environ.get("CANARY_ANALYZER_HTTP_PORT", "")
    return int(text) if text.isdigit() else 8080


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's default shown (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default in (argparse.SUPPRESS, ""))
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _plan_parser(rsub: argparse._SubParsersAction[_Parser]) -> None:
    plan = rsub.add_parser(
        "plan",
        help="per step: how long the rule needs at a given traffic; warns when "
        "maxStepDuration is too short",
        epilog="examples:\n  canary-analyzer rules plan rule.yaml --rps 2\n"
        "  canary-analyzer rules plan rule.yaml --events gateway.jsonl",
        formatter_class=HelpFormatter,
    )
    plan.add_argument("rule", help="one rule file")
    plan.add_argument("--rps", type=float, help="requests/s of the rule's model, all adapters")
    plan.add_argument(
        "--events", help="a recorded access log: traffic, TTFT spread and error rate from it"
    )
    plan.add_argument("--sigma", type=float, default=0.5, help="spread of log TTFT")
    plan.add_argument("--error-rate", type=float, default=0.005, help="baseline error rate")
    plan.add_argument(
        "--regression",
        type=float,
        help="TTFT factor whose detection time is shown (default: 1 + tolerance + 0.1)",
    )
    plan.set_defaults(func="plan:cmd_rules_plan")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canary-analyzer",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--log-level",
            type=str.lower,
            choices=["debug", "info", "warning", "error", "critical"],
            default="warning",
            help="structured logs on stderr at this level and above",
        )
        sp.add_argument(
            "--log-format",
            choices=["auto", "console", "json"],
            default="auto",
            help="auto: console on a terminal, JSON lines otherwise",
        )
        sp.add_argument("--dry-run", action="store_true", help="decide and report, write nothing")

    def report_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--report",
            metavar="FILE.html",
            help="write a self-contained HTML backtest report: per rollout the share, each "
            "check's interval against its tolerance, p-values against alpha, the decisions "
            "(needs the report extra: pip install 'canary-analyzer[report]')",
        )
        p.add_argument(
            "--report-png", metavar="DIR", help="also write the report's figures as PNGs in DIR"
        )

    def fail_on(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--fail-on",
            choices=["rollback", "inconclusive", "any"],
            help="backtest gate for CI: exit 3 when a rollout ends rolled back, undecided at "
            "the end (inconclusive), or anything but promoted (any)",
        )

    def max_skew(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--max-event-skew",
            type=_positive,
            default=MAX_EVENT_SKEW,
            metavar="SECONDS",
            help="lines dated this far ahead of the wall (live input) or of the event clock, "
            "or behind it, are rejected (future_timestamp, stale_timestamp) and never move "
            "the clock",
        )

    run = sub.add_parser("run", help="judge a live or recorded access log (embedded mode)")
    run.add_argument("--rules", action="append", help="rule file or directory (repeatable)")
    run.add_argument("--events", help="JSONL access log (.gz ok), or - for stdin")
    run.add_argument(
        "--follow",
        action="store_true",
        help="keep reading --events as it grows, across rotation (tail -F), until every "
        "rollout finished or Ctrl-C",
    )
    run.add_argument("--workdir", help="demo mode: where to copy the bundled files")
    run.add_argument("--kubeconfig", help="cluster mode: kubeconfig (default: in-cluster)")
    run.add_argument("--lease-name", default="canary-analyzer", help="leader-election Lease")
    run.add_argument(
        "--http-port",
        type=int,
        default=_port_default(),
        help="/healthz /readyz /metrics; 0: off (default: $CANARY_ANALYZER_HTTP_PORT or 8080; "
        "the image's health check asks the same port)",
    )
    run.add_argument(
        "--http-host",
        default="0.0.0.0",
        help="address the endpoints listen on (127.0.0.1: this host only)",
    )
    run.add_argument("--lease-namespace", help="default: $POD_NAMESPACE, else default")
    run.add_argument(
        "--kafka",
        action="store_true",
        help="consume the access log from Kafka (CANARY_ANALYZER_KAFKA_* settings)",
    )
    max_skew(run)
    common(run)
    run.set_defaults(func="run:cmd_run")

    rp = sub.add_parser("replay", help="event-time replay of a recorded log, at full speed")
    rp.add_argument(
        "--rules", action="append", required=True, help="rule file or directory (repeatable)"
    )
    rp.add_argument("--events", required=True, help="recorded JSONL access log (.gz ok), or -")
    rp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    report_options(rp)
    fail_on(rp)
    max_skew(rp)
    common(rp)
    rp.set_defaults(func="run:cmd_replay")

    sim = sub.add_parser("simulate", help="closed loop: a simulated gateway follows the weights")
    sim.add_argument(
        "--rules", action="append", help="rule file or directory (default: the bundled demo)"
    )
    sim.add_argument("--workdir", help="demo mode: where to copy the bundled files")
    sim.add_argument(
        "--in-place",
        action="store_true",
        help="write the simulated weights to the rules' manifests (default: to copies)",
    )
    sim.add_argument(
        "--canary-ttft-factor", type=float, default=1.0, help="canary TTFT / baseline TTFT"
    )
    sim.add_argument(
        "--canary-error-rate", type=float, default=None, help="canary error rate (None: baseline's)"
    )
    sim.add_argument(
        "--malformed-ratio", type=float, default=0.0, help="share of lines written malformed"
    )
    sim.add_argument("--rps", type=float, default=50.0, help="requests/s of the model")
    sim.add_argument("--speed", type=float, default=0.0, help="simulated s per wall s; 0 = max")
    sim.add_argument("--max-duration", type=float, default=3600.0, help="simulated seconds")
    sim.add_argument("--seed", type=int, default=1, help="random seed (runs are reproducible)")
    sim.add_argument("--start", type=float, default=None, help="simulated start, epoch seconds")
    sim.add_argument("--record", help="also write the simulated access log here")
    sim.add_argument(
        "--linger", type=float, default=0.0, help="simulated seconds of traffic after the end"
    )
    sim.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (live lines on stderr)"
    )
    fail_on(sim)
    report_options(sim)
    common(sim)
    sim.set_defaults(func="simulate:cmd_simulate")

    rules = sub.add_parser("rules", help="rule files")
    rsub = rules.add_subparsers(dest="rules_command", required=True, parser_class=_Parser)
    val = rsub.add_parser("validate", help="check rule files; exit 1 on any problem")
    val.add_argument("paths", nargs="+", help="rule files or directories")
    val.add_argument(
        "--strict",
        action="store_true",
        help="also check what the rules need where they run: every referenced secret set "
        "(env) or readable (file), target.file present and routing the rule's model",
    )
    val.set_defaults(func="rules:cmd_rules_validate")
    sch = rsub.add_parser("schema", help="print the rule JSON Schema")
    sch.set_defaults(func="rules:cmd_rules_schema")
    _plan_parser(rsub)

    ov = sub.add_parser("override", help="pause, resume, abort or promote a rollout by hand")
    ov.add_argument(
        "action", choices=["pause", "resume", "abort", "promote"], help="what the daemon does"
    )
    ov.add_argument(
        "--rules", action="append", required=True, help="rule file or directory (repeatable)"
    )
    ov.add_argument("--rule", required=True, help="the rule's metadata.name")
    ov.add_argument("--reason", default="", help="shown in the decision and notifications")
    ov.add_argument("--kubeconfig", help="for rules that route cluster objects")
    ov.set_defaults(func="objects:cmd_override")

    st = sub.add_parser("status", help="rollouts recorded on the routed objects")
    st.add_argument(
        "--rules",
        action="append",
        help="rule file or directory (repeatable); without: every rollout recorded on the "
        "routable objects of --namespace in the cluster",
    )
    st.add_argument("--kubeconfig", help="for rules that route cluster objects")
    st.add_argument(
        "-n", "--namespace", default="default", help="without --rules: the namespace to list"
    )
    st.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml"],
        default="table",
        help="table, wide (with the step's age and a pending command), json or yaml",
    )
    st.set_defaults(func="objects:cmd_status")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, name = args.func.split(":")
    command = getattr(importlib.import_module(f"analyzer.commands.{module}"), name)
    try:
        result: int = command(args)
    except SetupError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (head, less) went away: stop quietly, as Unix tools do.
        devnull = open(os.devnull, "w")  # noqa: SIM115
        os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 141
    return result
