"""The Gate interface and its answer.

Must not: do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from analyzer.notify.base import Notification

GateKind = Literal["confirm-step", "confirm-promotion"]


@dataclass(frozen=True)
class GateAnswer:
    open: bool
    reason: str


class Gate(Protocol):
    name: str
    kind: GateKind

    async def confirm(self, notification: Notification) -> GateAnswer: ...

    async def aclose(self) -> None: ...
