"""Task supervision for the long-running daemon (kopf-style): every loop is a named task; a task
that dies is logged and restarted with backoff, and one that keeps dying takes the process down
(a clear exit beats a silent zombie). Cancellation is always re-raised.

Must not: swallow CancelledError, or restart a task that ended normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("analyzer.daemon")


@dataclass
class Supervisor:
    """Runs named coroutines; restarts crashed ones; gives up after ``max_crashes`` in
    ``window`` seconds by setting ``fatal`` (the daemon then stops and exits non-zero)."""

    stop: asyncio.Event
    max_crashes: int = 5
    window: float = 300.0
    base_backoff: float = 0.5
    max_backoff: float = 30.0
    clock: Callable[[], float] = time.monotonic
    fatal: str | None = None
    crashes: dict[str, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guard(name, run), name=name)
        self.tasks.append(task)
        return task

    async def _guard(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        recent: list[float] = []
        while not self.stop.is_set():
            try:
                await run()
                return  # ended by itself (usually: stop was set)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = self.clock()
                recent = [t for t in recent if now - t < self.window] + [now]
                self.crashes[name] = self.crashes.get(name, 0) + 1
                if len(recent) >= self.max_crashes:
                    self.fatal = f"task {name} crashed {len(recent)} times: {exc!r}"
                    log.error("task_failed_for_good", task=name, error=repr(exc))
                    self.stop.set()
                    return
                delay = min(self.max_backoff, self.base_backoff * 2 ** (len(recent) - 1))
                log.error("task_crashed", task=name, error=repr(exc), restart_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)

    async def shutdown(self, timeout: float) -> None:
        """Give the tasks ``timeout`` seconds to finish after stop, then cancel them."""
        self.stop.set()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class Heartbeats:
    """When each long-running loop last went round. A loop silent for ``stall`` seconds is
    stuck (every wait in it is bounded far below that), and /healthz says so, so that the
    kubelet restarts the pod instead of leaving a zombie that holds the lease."""

    stall: float = 120.0
    clock: Callable[[], float] = time.monotonic
    last: dict[str, float] = field(default_factory=dict)

    def beat(self, name: str) -> None:
        self.last[name] = self.clock()

    def beater(self, name: str) -> Callable[[], None]:
        self.beat(name)
        return lambda: self.beat(name)

    def stuck(self) -> str | None:
        """Why the process is not alive (loops silent for too long), or None."""
        now = self.clock()
        silent = {n: now - t for n, t in self.last.items() if now - t > self.stall}
        if not silent:
            return None
        return "; ".join(f"{n} silent for {s:.0f}s" for n, s in sorted(silent.items()))
