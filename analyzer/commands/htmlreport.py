"""``replay --report``: the backtest as one self-contained HTML page (and PNGs) an SRE pastes
into a postmortem.

The page carries its figures as data-URI SVG images and its styles inline; it has no script and
fetches nothing, so it opens the same from a laptop, a ticket or an air-gapped host.

Must not: judge or recompute evidence (it draws what the replay recorded), or import
matplotlib before a report is asked for (the CLI stays fast and the extra stays optional).
"""

from __future__ import annotations

import base64
import html
import importlib
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.commands.recorder import JudgmentRecorder
from analyzer.commands.report import check_brief, clock, weights
from analyzer.errors import SetupError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.rollback { color: #b00; font-weight: bold; } .promote { color: #070; font-weight: bold; }
.meta { color: #555; } img { max-width: 100%; }
"""


CAPTION = (
    "Grey bands: each step's warm-up (counted, not evidence). Shaded band: the check's "
    "always-valid interval, which decides; dashed red: the tolerance, and alpha for the "
    "p-values (solid: harm, dotted: within tolerance). A pass needs the interval inside the "
    "tolerance; a rollback needs the corrected harm p below alpha."
)


def require_plots() -> Any:
    """The plotting module; a SetupError that names the extra when matplotlib is missing."""
    try:
        return importlib.import_module("analyzer.commands.plots")
    except ImportError as exc:
        raise SetupError(
            [
                f"--report needs matplotlib ({exc}): pip install 'canary-analyzer[report]'",
            ]
        ) from None


def _svg(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=100)


def _e(x: object) -> str:
    return html.escape(str(x))


def _decision_table(decisions: list[dict[str, Any]]) -> str:
    rows = []
    for i, d in enumerate(decisions, start=1):
        action = str(d["action"])
        evidence = "<br>".join(_e(check_brief(c)) for c in d.get("checks") or ())
        rows.append(
            f'<tr class="decision"><td>{i}</td><td>{_e(clock(float(d["at"])))}</td>'
            f'<td class="{_e(action)}">{_e(action.upper())}</td><td>{int(d["step"]) + 1}</td>'
            f"<td>{_e(d['canary_percent'])}%</td><td>{_e(d['reason'])}</td>"
            f"<td>{evidence}</td><td>{_e(weights(list((d.get('weights') or {}).items())))}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>#</th><th>time (UTC)</th><th>decision</th><th>step</th><th>canary</th>"
        "<th>reason</th><th>evidence</th><th>weights after</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def render(doc: dict[str, Any], recorder: JudgmentRecorder, png_dir: Path | None) -> str:
    """The page, and the PNGs in ``png_dir`` when given (``<rule>.png``, ``events.png``)."""
    plots = require_plots()
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>canary-analyzer backtest</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>canary-analyzer backtest</h1>",
    ]
    if doc.get("dry_run"):
        parts.append("<p><strong>DRY RUN</strong>: nothing was written to the routed objects.</p>")
    parts += [f'<p class="meta">{_e(n)}</p>' for n in doc.get("notes", ())]
    for r in doc["rollouts"]:
        name = str(r["name"])
        judged = recorder.judgments.get(name, [])
        decisions = list(r["decisions"])
        parts.append(f'<h2 id="rollout-{_e(name)}">rollout {_e(name)}: {_e(r["phase"])}</h2>')
        meta = f"{len(judged)} judgments, {len(decisions)} decisions"
        if r.get("canary_percent") is not None:
            meta += f"; ended at {r['canary_percent']}% canary"
        meta += f"; weights {weights(list(r['weights'].items()))}"
        parts.append(f'<p class="meta">{_e(meta)}</p>')
        if r.get("error"):
            parts.append(f'<p class="rollback">error: {_e(r["error"])}</p>')
        if judged or decisions:
            fig = plots.rollout_figure(name, judged, decisions)
            parts.append(f'<img class="rollout-plot" alt="rollout {_e(name)}" src="{_svg(fig)}">')
            parts.append(f'<p class="meta">{CAPTION}</p>')
            if png_dir is not None:
                _png(fig, png_dir / f"{name}.png")
        parts.append(_decision_table(decisions))
    unattributed = sum((Counter(r.get("unattributed") or {}) for r in doc["rollouts"]), Counter())
    fig = plots.events_figure(doc["events"], dict(unattributed))
    parts.append("<h2>access-log lines</h2>")
    parts.append(f'<img class="events-plot" alt="lines by outcome" src="{_svg(fig)}">')
    if png_dir is not None:
        _png(fig, png_dir / "events.png")
    parts.append("</body></html>")
    return "\n".join(parts)


def recorder_if_asked(report: str | None, png_dir: str | None) -> JudgmentRecorder | None:
    """A recorder when a report is asked for, after checking that it can be drawn (before the
    replay, not after minutes of it); None when none is."""
    if not (report or png_dir):
        return None
    require_plots()
    return JudgmentRecorder()


def write_report(
    report: str | None, png_dir: str | None, doc: dict[str, Any], recorder: JudgmentRecorder
) -> list[str]:
    """Write what was asked for; the files written, for the summary and ``--json``."""
    pngs = Path(png_dir) if png_dir else None
    page = render(doc, recorder, pngs)
    written = []
    if report:
        path = Path(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        written.append(str(path))
    if pngs is not None:
        files = [pngs / f"{r['name']}.png" for r in doc["rollouts"]]
        written += [str(p) for p in [*files, pngs / "events.png"] if p.exists()]
    return written
