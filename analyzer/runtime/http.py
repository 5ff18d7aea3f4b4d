"""The daemon's HTTP endpoints: /healthz (alive), /readyz (able to act), /metrics (Prometheus).

/healthz fails only when a loop is really stuck (the kubelet then restarts the pod); /readyz
fails while a probe says the daemon cannot act, and lists rules waiting for the API
(degraded: retried by themselves) without failing; neither shows API error text, which the
logs and ``canary-analyzer status`` carry.

Metrics are collected at scrape time from the live objects (controllers, engine, Kafka source,
delivery queues, leader elector), so nothing in the analysis path counts for them. Names follow
Prometheus conventions (``canary_analyzer_`` prefix, ``_total`` counters, base units).

Must not: change anything it reports on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.notify.delivery import DeliveryQueue
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.sources.kafka import KafkaSource

PHASES = ("Progressing", "Paused", "Succeeded", "RolledBack")


@dataclass
class Observed:
    """What the endpoints look at; parts absent in a mode stay empty."""

    engine: Engine
    controllers: Sequence[RolloutController]
    queues: Sequence[DeliveryQueue] = ()
    source: KafkaSource | None = None
    is_leader: Callable[[], bool] = lambda: True
    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    """Readiness probes: name -> None when fine, else why not."""
    rule_errors: Callable[[], int] = lambda: 0
    """Problems found in the rule files last read (the last good rules keep running)."""
    stuck: Callable[[], str | None] = lambda: None
    """Liveness: why the process's loops are stuck, or None."""


class DaemonCollector(Collector):
    def __init__(self, observed: Observed) -> None:
        self.o = observed

    def collect(self) -> Iterator[Metric]:
        o = self.o
        events = CounterMetricFamily(
            "canary_analyzer_events", "Access-log lines by outcome", labels=["outcome", "reason"]
        )
        stats = o.engine.stats
        events.add_metric(["accepted", ""], stats.accepted)
        events.add_metric(["ignored", ""], stats.ignored)
        for reason, n in sorted(stats.rejected_by_reason.items()):
            events.add_metric(["rejected", reason], n)
        yield events
        judgments = CounterMetricFamily(
            "canary_analyzer_judgments", "Check results", labels=["rule", "check", "status"]
        )
        p_values = GaugeMetricFamily(
            "canary_analyzer_check_p_value", "Last p-value per check", labels=["rule", "check"]
        )
        alphas = GaugeMetricFamily(
            "canary_analyzer_check_alpha",
            "Each check's alpha (the line its p-value is judged against)",
            labels=["rule", "check"],
        )
        effects = GaugeMetricFamily(
            "canary_analyzer_check_effect",
            "Last effect per check (ratio or difference)",
            labels=["rule", "check"],
        )
        weights = GaugeMetricFamily(
            "canary_analyzer_weight", "Weight last written per adapter", labels=["rule", "adapter"]
        )
        phase = GaugeMetricFamily(
            "canary_analyzer_rollout_phase", "1 for the rollout's phase", labels=["rule", "phase"]
        )
        step = GaugeMetricFamily(
            "canary_analyzer_canary_percent", "Canary share of the current step", labels=["rule"]
        )
        degraded = GaugeMetricFamily(
            "canary_analyzer_rollout_degraded",
            "1 while a rule waits for the API (retrying by itself)",
            labels=["rule"],
        )
        decisions = CounterMetricFamily(
            "canary_analyzer_decisions", "Decisions by action", labels=["rule", "action"]
        )
        unattributed = CounterMetricFamily(
            "canary_analyzer_unattributed_lines",
            "Lines of a rule's model naming no adapter of either group, over the rollout",
            labels=["rule", "adapter"],
        )
        for c in o.controllers:
            degraded.add_metric([c.name], 1.0 if c.degraded else 0.0)
            for adapter, n in sorted(c.unattributed.items()):
                unattributed.add_metric([c.name, adapter], n)
            for (check, status), n in sorted(c.judgments.items()):
                judgments.add_metric([c.name, check, status], n)
            for spec in c.spec.checks:
                alphas.add_metric([c.name, spec.name], spec.alpha)
            if c.last_verdict is not None:
                for r in c.last_verdict.checks:
                    if r.p_value is not None:
                        p_values.add_metric([c.name, r.name], r.p_adjusted or r.p_value)
                    if r.effect is not None:
                        effects.add_metric([c.name, r.name], r.effect)
            if c.state is not None:
                for adapter, w in c.state.applied:
                    weights.add_metric([c.name, adapter], float(w or 0))
                for ph in PHASES:
                    phase.add_metric([c.name, ph], 1.0 if c.state.phase == ph else 0.0)
                step.add_metric([c.name], float(c.state.canary_percent))
            counted: dict[str, int] = {}
            for d in c.decisions:
                counted[d.action] = counted.get(d.action, 0) + 1
            for action, n in sorted(counted.items()):
                decisions.add_metric([c.name, action], n)
        yield from (judgments, p_values, alphas, effects, weights, phase, step, decisions)
        yield unattributed
        yield degraded
        deliveries = CounterMetricFamily(
            "canary_analyzer_notifications",
            "Notifications by destination and outcome",
            labels=["destination", "outcome"],
        )
        for q in o.queues:
            s = q.stats
            for outcome, n in (
                ("delivered", s.delivered),
                ("failed", s.failed),
                ("dropped", s.dropped),
                ("retried", s.retries),
                ("unconfirmed", s.unconfirmed),
            ):
                deliveries.add_metric([q.name, outcome], n)
        yield deliveries
        if o.source is not None:
            lag = GaugeMetricFamily(
                "canary_analyzer_kafka_consumer_lag",
                "Records behind, per partition",
                labels=["partition"],
            )
            for part, n in sorted(o.source.stats.lag.items()):
                lag.add_metric([part], n)
            yield lag
            yield GaugeMetricFamily(
                "canary_analyzer_kafka_events_per_second",
                "Records consumed per second",
                value=o.source.stats.events_per_second,
            )
        yield GaugeMetricFamily(
            "canary_analyzer_leader",
            "1 while this replica holds the lease",
            value=1.0 if o.is_leader() else 0.0,
        )
        yield GaugeMetricFamily(
            "canary_analyzer_rule_errors",
            "Problems in the rule files last read; non-zero means a change was refused",
            value=float(o.rule_errors()),
        )


def make_app(observed: Observed) -> web.Application:
    registry = CollectorRegistry()
    registry.register(DaemonCollector(observed))

    async def healthz(_: web.Request) -> web.Response:
        stuck = observed.stuck()
        if stuck is not None:
            return web.Response(text=f"stuck: {stuck}\n", status=503)
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = {
            name: why for name, probe in observed.checks.items() if (why := probe()) is not None
        }
        if not observed.controllers:
            problems["rules"] = "no rules loaded"
        if problems:
            return web.json_response({"ready": False, "problems": problems}, status=503)
        body: dict[str, object] = {"ready": True, "leader": observed.is_leader()}
        waiting = sorted(c.name for c in observed.controllers if c.degraded)
        if waiting:
            body["degraded"] = waiting
        return web.json_response(body)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
