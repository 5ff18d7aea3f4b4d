"""The daemon: Kafka in, judgments on event time and the wall clock, writes only when leading.

``Daemon(settings, reporter).run()`` owns every long-running part: the supervisor and its named
tasks (leader election, one watch per routed object, Kafka ingestion), signals, the rewind on
takeover, rule reloads and the HTTP endpoints; it returns the rollouts' summary when it stops.
Without Kafka settings (rules whose checks all query Prometheus) the wall clock alone moves
the engine (sources/clock.py).

Must not: parse arguments, print (the reporter does), or exit the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from analyzer.analysis.judge import Verdict
from analyzer.config import LoadedRule
from analyzer.errors import SetupError
from analyzer.events.skew import DEFAULT_MAX_SKEW
from analyzer.notify.delivery import DeliveryQueue
from analyzer.routers.base import RoutedObject, RouterError
from analyzer.routers.kubeconfig import api_client
from analyzer.runtime.controller import RolloutController
from analyzer.runtime.engine import Engine
from analyzer.runtime.http import Observed, make_app
from analyzer.runtime.http import serve as serve_http
from analyzer.runtime.leader import KubeLeaseStore, LeaderElector
from analyzer.runtime.reload import RuleDirectory
from analyzer.runtime.summary import summarize
from analyzer.runtime.supervisor import Heartbeats, Supervisor
from analyzer.runtime.wiring import build_controllers, swap_controllers, without_log_readers
from analyzer.sources.clock import EventSource, WallClockSource
from analyzer.sources.kafka import KafkaSource
from analyzer.sources.kafkasettings import KafkaSettings

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

log = structlog.get_logger("analyzer.daemon")

IDLE_LOOKBACK = 300.0
"""Seconds of log a replica reads at start when no rollout is running."""
RELOAD_EVERY = 5.0
SOURCE_STOP_TIMEOUT = 10.0


class Reporter(Protocol):
    """Where judgments and decisions are shown (the terminal, or nowhere)."""

    def __call__(self, c: RolloutController, now: float, verdict: Verdict) -> None: ...

    def flush(self, controllers: Sequence[RolloutController]) -> None: ...


@dataclass(frozen=True)
class DaemonSettings:
    rules: list[LoadedRule]
    kafka: KafkaSettings | None
    """None: no access log is read (every check of every rule queries Prometheus)."""
    dry_run: bool = False
    kubeconfig: str | None = None
    lease_name: str = "canary-analyzer"
    lease_namespace: str | None = None
    http_port: int = 8080
    rule_paths: list[Path] = field(default_factory=list)
    """Rule files re-read every few seconds (hot reload); empty: the rules never change."""
    max_skew: float = DEFAULT_MAX_SKEW
    """Event times this far off the wall or the event clock are rejected (events/skew.py)."""
    http_host: str = "0.0.0.0"


class Daemon:
    def __init__(self, settings: DaemonSettings, reporter: Reporter) -> None:
        self.settings = settings
        self.reporter = reporter
        self.stop = asyncio.Event()
        self.supervisor = Supervisor(self.stop)
        self.heartbeats = Heartbeats()
        self.api: ApiClient | None = None
        self.queues: list[DeliveryQueue] = []
        self.controllers: list[RolloutController] = []
        self.is_leader: Callable[[], bool] = lambda: True  # one replica, files: always leads
        self._watch_stops: dict[int, asyncio.Event] = {}

    async def run(self) -> list[dict[str, Any]]:
        """Until SIGINT/SIGTERM (or a task that keeps crashing); the rollouts' summary."""
        s = self.settings
        if any(r.manifest_path is None for r in s.rules):
            try:
                self.api = await api_client(s.kubeconfig)
            except RouterError as exc:
                raise SetupError([f"kubernetes: {exc}"]) from exc
        try:
            return await self._run()
        finally:
            if self.api is not None:
                await self.api.close()

    async def _run(self) -> list[dict[str, Any]]:
        s = self.settings
        self.controllers = build_controllers(
            s.rules, s.dry_run, self.reporter, self.api, self.queues, self._leads, live=True
        )
        for c in self.controllers:
            try:
                await c.router.check_served()
            except RouterError as exc:
                raise SetupError([f"rule {c.name}: {exc}"]) from exc
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        await self._elect()
        engine = Engine(self.controllers, is_leader=self.is_leader, max_skew=s.max_skew)
        await engine.start(time.time())
        source = self._source(engine)
        # Nothing running: the log before now can only precede every step that will start, so
        # read from a few minutes back (clock skew) instead of the whole retention.
        since = self._running_since()
        if since is not None:
            await source.start(since=since)
        else:
            await source.start(since=time.time() - IDLE_LOOKBACK, must_rewind=False)
        for c in self.controllers:
            self.supervisor.spawn(f"watch-{c.name}", self._watcher(c, engine))
        task = "kafka-ingest" if isinstance(source, KafkaSource) else "wall-clock"
        ingest_beat = self.heartbeats.beater(task)
        self.supervisor.spawn(task, lambda: source.run(self.stop, beat=ingest_beat))
        rule_dir = RuleDirectory(s.rule_paths) if s.rule_paths else None
        if rule_dir is not None:
            rule_dir.poll()
        http = await self._serve(engine, source, rule_dir)
        try:
            await self._loop(engine, source, rule_dir)
        finally:
            # SIGTERM: no new decisions, in-flight ones finish (10 s), notifications flush (10 s).
            for stop in self._watch_stops.values():
                stop.set()
            await self.supervisor.shutdown(timeout=10)
            try:  # a broker gone away must not hold the exit (leaving the group waits for it)
                await asyncio.wait_for(source.stop(), SOURCE_STOP_TIMEOUT)
            except TimeoutError:
                log.warning("kafka_stop_timeout", after=SOURCE_STOP_TIMEOUT)
            await engine.close()
            self.reporter.flush(self.controllers)
            if http is not None:
                await http.cleanup()
        summary = await summarize(self.controllers)
        if self.supervisor.fatal is not None:
            summary.append(
                {
                    "name": "daemon",
                    "phase": "Error",
                    "canary_percent": None,
                    "weights": {},
                    "error": self.supervisor.fatal,
                    "decisions": [],
                }
            )
        return summary

    def _source(self, engine: Engine) -> EventSource:
        kafka = self.settings.kafka
        if kafka is None:
            return WallClockSource(engine)
        replica = os.environ.get("CANARY_ANALYZER_REPLICA") or socket.gethostname()
        return KafkaSource(kafka.for_replica(replica), engine, wall_clock=True)

    def _leads(self) -> bool:
        """Asked before every write: bound late, the elector comes after the controllers."""
        return self.is_leader()

    async def _elect(self) -> None:
        if self.api is None:
            return
        s = self.settings
        identity = f"{socket.gethostname()}-{os.getpid()}"
        namespace = s.lease_namespace or os.environ.get("POD_NAMESPACE", "default")
        elector = LeaderElector(
            KubeLeaseStore(self.api, s.lease_name, namespace), identity, clock=time.time
        )
        await elector.try_acquire_or_renew()
        self.supervisor.spawn("leader-election", lambda: elector.run(self.stop))
        self.is_leader = elector.is_leader

    def _running_since(self) -> float | None:
        starts = [c.state.evidence_since for c in self.controllers if c.active and c.state]
        return min(starts) if starts else None

    def _watcher(self, c: RolloutController, engine: Engine) -> Callable[[], Awaitable[None]]:
        """The watch loop of one routed object; only the leader reacts (followers never write).
        It ends with the daemon, or when a reload replaces the controller."""
        stop = self._watch_stops.setdefault(id(c), asyncio.Event())

        async def changed(obj: RoutedObject) -> None:
            if self.is_leader() and not c.retired:
                await c.on_object_change(obj, engine.now or time.time())

        return lambda: c.router.watch(changed, stop)

    async def _serve(
        self, engine: Engine, source: EventSource, rule_dir: RuleDirectory | None
    ) -> Any:
        if not self.settings.http_port:
            return None
        kafka = source if isinstance(source, KafkaSource) else None
        checks: dict[str, Callable[[], str | None]] = {
            # Names only: API error text stays in the logs and `status`.
            "rollouts": lambda: (
                ", ".join(f"{c.name} in error" for c in self.controllers if c.error) or None
            ),
        }
        if kafka is not None:
            checks = {"kafka": kafka.not_ready, **checks}
        observed = Observed(
            engine,
            self.controllers,
            self.queues,
            kafka,
            self.is_leader,
            checks=checks,
            rule_errors=lambda: len(rule_dir.errors) if rule_dir is not None else 0,
            stuck=self.heartbeats.stuck,
        )
        return await serve_http(
            make_app(observed), self.settings.http_host, self.settings.http_port
        )

    async def _loop(
        self, engine: Engine, source: EventSource, rule_dir: RuleDirectory | None
    ) -> None:
        leading = self.is_leader()
        next_reload = time.monotonic() + RELOAD_EVERY
        beat = self.heartbeats.beater("main-loop")
        while not self.stop.is_set():
            await asyncio.sleep(1.0)
            beat()
            self.reporter.flush(self.controllers)
            # Taking over: the windows were rebuilt from the steps' starts; read the log
            # again from there (records already folded are skipped by offset).
            rewind = self.is_leader() and not leading
            if rule_dir is not None and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + RELOAD_EVERY
                reloaded = rule_dir.poll()
                if reloaded is not None:
                    await self._reload(engine, reloaded)
                    rewind = True  # new rules' windows fill from their steps' starts
            if rewind:
                since = self._running_since()
                if since is not None:
                    await source.rewind(since)
            leading = self.is_leader()

    async def _reload(self, engine: Engine, rules: list[LoadedRule]) -> None:
        s = self.settings
        rules, refused = without_log_readers(rules, reads_log=s.kafka is not None)
        for problem in refused:  # that rule is left out; the others keep running
            log.error("rule_refused", problem=problem)
        swapped, problems = swap_controllers(
            self.controllers,
            rules,
            s.dry_run,
            self.reporter,
            self.api,
            self.queues,
            self._leads,
            live=True,
        )
        for problem in problems:  # that rule is left out; the others keep running
            log.error("rule_refused", problem=problem)
        fresh = [c for c in swapped if c not in self.controllers]
        for old in self.controllers:
            if old not in swapped:  # replaced or removed: it stops everything it owns
                old.retired = True
                self._watch_stops.pop(id(old), asyncio.Event()).set()
        await engine.set_controllers(swapped)
        self.controllers[:] = swapped
        for c in fresh:
            self.supervisor.spawn(f"watch-{c.name}", self._watcher(c, engine))
