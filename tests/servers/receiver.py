"""A real HTTP receiver (aiohttp on loopback, in its own thread) acting as Slack, a webhook
endpoint or a gate. Each request is recorded; answers follow a script, then a default."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.threaded import ThreadedServer


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    json: Any = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver(ThreadedServer):
    def __init__(
        self,
        script: list[Answer] | None = None,
        default: Answer | None = None,
        answer: Callable[[Recorded], Answer] | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        """``hold``: every answer waits until it is set (a receiver slower than anything the
        test does, without a race against the wall clock)."""
        self.hold = hold
        self.script = list(script or [])
        self.default = default or Answer()
        self.answer = answer
        self.requests: list[Recorded] = []
        super().__init__()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(request.path, dict(request.headers), await request.read(), time.monotonic())
        self.requests.append(rec)
        if self.answer is not None:
            ans = self.answer(rec)
        else:
            ans = self.script.pop(0) if self.script else self.default
        if ans.delay:
            await asyncio.sleep(ans.delay)
        while self.hold is not None and not self.hold.is_set():
            await asyncio.sleep(0.01)
        if ans.json is not None:
            return web.json_response(ans.json, status=ans.status, headers=ans.headers)
        return web.Response(status=ans.status, text=ans.body, headers=ans.headers)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests
