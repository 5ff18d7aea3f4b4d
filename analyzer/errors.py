"""The errors a command reports to its user and exits on, importable without loading anything.

Must not: import anything from the package (the command line imports this before a command).
"""

from __future__ import annotations

from collections.abc import Sequence


class CanaryAnalyzerError(Exception):
    """Base of the errors canary-analyzer raises on purpose."""


class SetupError(CanaryAnalyzerError):
    """What stops a command before it runs, one problem per line (exit status 2)."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
