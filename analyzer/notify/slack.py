"""Slack: Block Kit messages an on-call engineer can act on, from a phone.

Each decision is one message: a header saying what happened, the reason in bold, the object,
model and step, the weights before -> after, and the evidence table (check, n baseline/canary,
effect with interval, p-value, verdict). Block Kit limits are respected by truncation (header
150, section text 3000, 10 fields, 50 blocks). With a bot token, the first message of a rollout
starts a thread and later ones reply in it; promotions, rollbacks and errors are also broadcast
to the channel. The thread map lives in memory: after a restart a rollout starts a new thread.

Must not: log the webhook URL or the token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from analyzer.analysis.checks import deciding_p
from analyzer.notify.base import Notification
from analyzer.notify.delivery import DeliveryError
from analyzer.notify.http import post_json_once

HEADER_MAX = 150
TEXT_MAX = 3000
FIELD_MAX = 2000

_TITLES = {
    "start": (":rocket:", "Rollout started"),
    "advance": (":arrow_up:", "Step advanced"),
    "promote": (":white_check_mark:", "Promoted"),
    "hold": (":hourglass_flowing_sand:", "Holding"),
    "pause": (":double_vertical_bar:", "Paused"),
    "resume": (":arrow_forward:", "Resumed"),
    "rollback": (":rotating_light:", "ROLLED BACK"),
    "error": (":x:", "Error"),
    "degraded": (":warning:", "Waiting for the API"),
    "recovered": (":arrows_counterclockwise:", "API back, resuming"),
}
_BROADCAST = frozenset({"promote", "rollback", "error"})


def escape(text: str) -> str:
    """Slack's three control characters as entities: a reason a person typed (an override's)
    cannot ping ``<!channel>``, forge a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(lines: list[str], title: str) -> str:
    head = f"*{title}*\n```"
    body = "\n".join(lines)
    room = TEXT_MAX - len(head) - 3
    if len(body) > room:
        body = body[: room - 2] + "\n…"
    return f"{head}{body}```"


def _number(x: float | None, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def evidence_lines(checks: tuple[dict[str, Any], ...]) -> list[str]:
    rows = [
        f"{'check':<10} {'n base/can':>13} {'effect [interval]':>24} {'bound':>8} {'p':>8}  verdict"
    ]
    for c in checks:
        ratio = c.get("effect_kind", "ratio") == "ratio"
        fmt = ".3f" if ratio else "+.4f"
        eff = _number(c.get("effect"), fmt) + ("x" if ratio and c.get("effect") else "")
        ci = c.get("ci")
        interval = f"[{_number(ci[0], fmt)}, {_number(ci[1], fmt)}]" if ci else ""
        p = deciding_p(c)
        verdict = c["status"].upper() if c["status"] == "fail" else c["status"]
        if c.get("dry_run"):
            verdict += " (dry run)"
        rows.append(
            f"{c['name'][:10]:<10} {c['n_baseline']:>6}/{c['n_canary']:<6} "
            f"{eff + ' ' + interval:>24} {_number(c.get('bound'), fmt):>8} "
            f"{_number(p, '.2g'):>8}  {verdict}"
        )
    return rows


def weight_lines(n: Notification) -> list[str]:
    before, after = dict(n.weights_before), dict(n.weights_after)
    names = list(before) + [a for a in after if a not in before]
    width = max((len(a) for a in names), default=0)

    def show(w: int | str | None) -> str:
        return "-" if w is None else str(w)

    return [
        f"{a:<{width}}  {show(before.get(a, 'absent')):>7} -> {show(after.get(a, 'removed'))}"
        for a in names
    ]


def render(n: Notification) -> dict[str, Any]:
    """The message body (``text`` fallback + ``blocks``) for one decision."""
    d = n.decision
    emoji, title = _TITLES.get(d.action, (":information_source:", d.action))
    dry = " (dry run)" if n.dry_run else ""
    header = _cut(f"{emoji} {title}{dry}: {n.rule}", HEADER_MAX)
    share = "back to 0% canary" if d.action == "rollback" else f"{d.canary_percent}% canary"
    step = f"{d.step + 1}/{len(n.steps)} · {share}" if n.steps else "–"
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*Object*\n{n.object}", FIELD_MAX)},
        {"type": "mrkdwn", "text": _cut(f"*Model*\n`{n.model}`", FIELD_MAX)},
        {"type": "mrkdwn", "text": f"*Step*\n{step}"},
        {"type": "mrkdwn", "text": f"*Phase*\n{n.phase}"},
    ]
    when = datetime.fromtimestamp(d.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(f"*{escape(d.reason)}*", TEXT_MAX)},
        },
        {"type": "section", "fields": fields},
    ]
    if n.weights_before != n.weights_after:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _code(weight_lines(n), "Weights")},
            }
        )
    if d.checks:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _code(evidence_lines(d.checks), "Evidence")},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _cut(f"rule `{n.rule}` · revision `{n.revision}` · {when}", TEXT_MAX),
                }
            ],
        }
    )
    return {
        "text": _cut(f"{title}{dry}: {n.rule}: {escape(d.reason)}", TEXT_MAX),
        "blocks": blocks,
    }


class SlackWebhookTransport:
    """Incoming webhook: no threads, one message per decision."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.client = httpx.AsyncClient(timeout=timeout)

    async def send(self, notification: Notification) -> None:
        body = orjson.dumps(render(notification))
        await post_json_once(self.client, self.url, body, {})

    async def aclose(self) -> None:
        await self.client.aclose()


class SlackBotTransport:
    """chat.postMessage with a bot token; one thread per rollout (rule + revision)."""

    def __init__(self, token: str, channel: str, api_url: str, timeout: float) -> None:
        self.token = token
        self.channel = channel
        self.endpoint = api_url.rstrip("/") + "/chat.postMessage"
        self.client = httpx.AsyncClient(timeout=timeout)
        self.threads: dict[tuple[str, str], str] = {}

    async def send(self, notification: Notification) -> None:
        message: dict[str, Any] = {"channel": self.channel, **render(notification)}
        thread_key = (notification.rule, notification.revision)
        thread = self.threads.get(thread_key)
        if thread is not None:
            message["thread_ts"] = thread
            if notification.decision.action in _BROADCAST:
                message["reply_broadcast"] = True
        response = await post_json_once(
            self.client,
            self.endpoint,
            orjson.dumps(message),
            {"Authorization": f"Bearer {self.token}"},
        )
        try:
            answer = response.json()
        except ValueError:
            raise DeliveryError("Slack answered with no JSON", retryable=True) from None
        if not answer.get("ok"):
            error = str(answer.get("error", "unknown"))
            raise DeliveryError(
                f"Slack error {error}", retryable=error in ("ratelimited", "service_unavailable")
            )
        if thread is None and isinstance(answer.get("ts"), str):
            self.threads[thread_key] = answer["ts"]

    async def aclose(self) -> None:
        await self.client.aclose()
