"""Rules from a directory, picked up, changed and removed while the daemon runs.

A Kubernetes ConfigMap volume updates by swapping a ``..data`` symlink to a new timestamped
directory, so files are compared by content (through the links), not by mtime. A set of files
that does not validate is refused as a whole, its errors logged, and the last good rules keep
running: a typo in one rule never stops the others.

Must not: start or stop rollouts itself (the daemon swaps controllers).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog

from analyzer.config import LoadedRule, RuleError, load_rules, rule_files

log = structlog.get_logger("analyzer.rules")


class RuleDirectory:
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._fingerprint: str | None = None
        self.current: list[LoadedRule] = []
        self.errors: list[RuleError] = []

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in rule_files(self.paths):
            digest.update(str(path).encode())
            try:
                digest.update(path.read_bytes())  # follows the ConfigMap's symlinks
            except OSError as exc:
                digest.update(repr(exc).encode())
        return digest.hexdigest()

    def poll(self) -> list[LoadedRule] | None:
        """The new rule set when the files changed and validate; None otherwise."""
        fingerprint = self.fingerprint()
        if fingerprint == self._fingerprint:
            return None
        self._fingerprint = fingerprint
        rules, errors = load_rules(self.paths)
        if not rules and not errors and self.current:
            # An emptied directory (a ConfigMap mounted empty, files deleted by mistake) would
            # abandon every running rollout mid-step: refused like an invalid set.
            where = ", ".join(map(str, self.paths))
            errors = [
                RuleError(where, 0, 0, "", "no rules found; the last good rules keep running")
            ]
        self.errors = errors
        if errors:
            for err in errors:
                log.error("rule_refused", error=str(err))
            log.warning(
                "rules_kept",
                running=[r.name for r in self.current],
                refused_files=sorted({e.file for e in errors}),
            )
            return None
        log.info("rules_loaded", rules=[r.name for r in rules])
        self.current = rules
        return rules
