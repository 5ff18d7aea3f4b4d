"""The backtest report's figures: one per rollout (share, each check's interval, p-values) and
one of the log's lines by outcome.

matplotlib's object API (``Figure``), never pyplot: no global figure state, no GUI backend.
It is imported by the caller only when a report is asked for (the ``report`` extra).

Must not: judge or recompute evidence; it draws what the recorder kept and the summary said.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analyzer.commands.recorder import Judgment

ACTION_COLOURS = {
    "start": "#555555",
    "advance": "#1f77b4",
    "promote": "#2ca02c",
    "rollback": "#d62728",
    "hold": "#8c564b",
    "pause": "#ff7f0e",
    "resume": "#9467bd",
    "error": "#e377c2",
    "degraded": "#bcbd22",
    "recovered": "#17becf",
}
SPAN = 3.0
"""A check's panel spans this many tolerances either side of "no change" (further when the
estimate does): an interval that reaches past it is cut, so a wide first look does not flatten
the rest."""


def _finite(x: float | None) -> float:
    return float(x) if x is not None and math.isfinite(x) else math.nan


def _minutes(at: float, origin: float) -> float:
    return (at - origin) / 60.0


def rollout_origin(judgments: Sequence[Judgment], decisions: Sequence[dict[str, Any]]) -> float:
    times = [j.at for j in judgments] + [float(d["at"]) for d in decisions]
    return min(times) if times else 0.0


def rollout_figure(
    name: str, judgments: Sequence[Judgment], decisions: Sequence[dict[str, Any]]
) -> Figure:
    """Share over time with the decisions numbered, then a panel per check (effect and its
    always-valid interval against the tolerance), then the p-values against alpha."""
    check_names = list(dict.fromkeys(c["name"] for j in judgments for c in j.checks))
    rows = 2 + len(check_names)
    fig = Figure(figsize=(10, 2.2 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    origin = rollout_origin(judgments, decisions)
    _share(axes[0], judgments, decisions, origin)
    for ax, check in zip(axes[1:-1], check_names, strict=True):
        _check(ax, check, judgments, origin)
    _pvalues(axes[-1], check_names, judgments, origin)
    start = datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    axes[-1].set_xlabel(f"minutes since {start}")
    fig.suptitle(f"rollout {name}")
    for ax in axes:
        _shade_warmups(ax, judgments, origin)
    return fig


def _shade_warmups(ax: Axes, judgments: Sequence[Judgment], origin: float) -> None:
    """Each step's warm-up, from the weight change to where its evidence starts."""
    spans = dict.fromkeys((j.step_started_at, j.evidence_from) for j in judgments)
    for begin, end in spans:
        if end > begin:
            ax.axvspan(
                _minutes(begin, origin), _minutes(end, origin), color="#cccccc", alpha=0.35, lw=0
            )


def _share(
    ax: Axes, judgments: Sequence[Judgment], decisions: Sequence[dict[str, Any]], origin: float
) -> None:
    points = sorted(
        [(j.at, j.canary_percent) for j in judgments]
        + [(float(d["at"]), int(d["canary_percent"])) for d in decisions]
    )
    if points:
        ax.step(
            [_minutes(t, origin) for t, _ in points],
            [p for _, p in points],
            where="post",
            color="#333333",
            lw=1.5,
        )
    for i, d in enumerate(decisions, start=1):
        x = _minutes(float(d["at"]), origin)
        colour = ACTION_COLOURS.get(str(d["action"]), "#000000")
        ax.axvline(x, color=colour, lw=0.8, ls="--")
        ax.plot([x], [d["canary_percent"]], "o", color=colour, ms=7)
        ax.annotate(
            f"{i} {str(d['action']).upper()}",
            (x, d["canary_percent"]),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=8,
            color=colour,
        )
    ax.set_ylim(-5, 110)
    ax.set_ylabel("canary %")
    ax.grid(alpha=0.3)


def _check(ax: Axes, name: str, judgments: Sequence[Judgment], origin: float) -> None:
    xs, effect, lo, hi = [], [], [], []
    bound: float | None = None
    kind = "ratio"
    for j in judgments:
        for c in j.checks:
            if c["name"] != name or c.get("effect") is None:
                continue
            kind = str(c.get("effect_kind") or kind)
            bound = c.get("bound") if c.get("bound") is not None else bound
            xs.append(_minutes(j.at, origin))
            effect.append(float(c["effect"]))
            ci = c.get("ci") or (math.nan, math.nan)
            lo.append(_finite(ci[0]))  # an open end (an inf) is not drawn, not drawn forever
            hi.append(_finite(ci[1]))
    centre = 1.0 if kind == "ratio" else 0.0
    if xs:
        ax.fill_between(xs, lo, hi, color="#1f77b4", alpha=0.2, lw=0, label="interval")
        ax.plot(xs, effect, color="#1f77b4", lw=1.2, label="effect")
    ax.axhline(centre, color="#777777", lw=0.8)
    if bound is not None:
        ax.axhline(bound, color="#d62728", lw=1.0, ls="--", label="tolerance")
        reach = SPAN * abs(bound - centre) or 1.0
        margin = 0.1 * reach
        low = min([centre - reach, *(e - margin for e in effect)])
        high = max([centre + reach, *(e + margin for e in effect)])
        ax.set_ylim(low, high)  # the interval may be cut, the estimate never
    label = "canary / baseline" if kind == "ratio" else "canary - baseline"
    ax.set_ylabel(f"{name}\n{label}", fontsize=8)
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)


def _pvalues(
    ax: Axes, check_names: Sequence[str], judgments: Sequence[Judgment], origin: float
) -> None:
    alpha: float | None = None
    floor = 1e-12  # a p of 0 is drawn at the floor, not dropped from a log axis
    for i, name in enumerate(check_names):
        colour = f"C{i % 10}"
        # Harm decides on the familywise-corrected p: that is the one drawn against alpha.
        for keys, style, side in (
            (("p_adjusted", "p_value"), "-", "harm (corrected)"),
            (("p_within",), ":", "within"),
        ):
            xs, ps = [], []
            for j in judgments:
                for c in j.checks:
                    p = next((c[k] for k in keys if c.get(k) is not None), None)
                    if c["name"] == name and p is not None:
                        alpha = float(c.get("alpha") or 0.01)
                        xs.append(_minutes(j.at, origin))
                        ps.append(max(float(p), floor))
            if xs:
                ax.plot(xs, ps, style, color=colour, lw=1.1, label=f"{name} {side}")
    if alpha is not None:
        ax.axhline(alpha, color="#d62728", lw=1.0, ls="--", label=f"alpha {alpha:g}")
    ax.set_yscale("log")
    ax.set_ylim(top=1.5)
    ax.set_ylabel("p (always valid)", fontsize=8)
    ax.legend(loc="lower left", fontsize=7, ncols=3)
    ax.grid(alpha=0.3)


def events_figure(events: dict[str, Any], unattributed: dict[str, int]) -> Figure:
    """Every line of the log by what became of it, rejected ones by reason."""
    bars: list[tuple[str, int]] = [
        ("accepted", int(events.get("accepted", 0))),
        ("ignored", int(events.get("ignored", 0))),
    ]
    bars += [(f"rejected: {k}", int(v)) for k, v in events.get("rejected_by_reason", {}).items()]
    bars += [(f"unattributed: {k}", int(v)) for k, v in unattributed.items()]
    fig = Figure(figsize=(8, max(2.5, 0.5 + 0.35 * len(bars))), layout="constrained")
    ax = fig.subplots()
    labels = [b[0] for b in bars]
    counts = [b[1] for b in bars]
    colours = [
        "#2ca02c" if lab == "accepted" else "#d62728" if lab.startswith("rejected") else "#888888"
        for lab in labels
    ]
    ax.barh(labels, counts, color=colours)
    ax.invert_yaxis()
    for y, n in enumerate(counts):
        ax.annotate(f"{n:,}", (n, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_xlabel("lines")
    ax.set_title("access-log lines by outcome")
    return fig
