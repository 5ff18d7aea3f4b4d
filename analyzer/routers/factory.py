"""Picks the router for a rule: the manifest file in embedded mode, dry-run wrapping if asked.

Must not: hold state of its own.
"""

from __future__ import annotations

from analyzer.config import LoadedRule
from analyzer.routers.base import RouterError, TrafficRouter
from analyzer.routers.dryrun import DryRunRouter
from analyzer.routers.file import FileRouter


def make_router(loaded: LoadedRule, dry_run: bool = False) -> TrafficRouter:
    spec = loaded.rule.spec
    path = loaded.manifest_path
    if path is None:
        raise RouterError(
            f"rule {loaded.name}: spec.target.file is required in embedded mode "
            "(cluster routers are not part of this build)"
        )
    router: TrafficRouter = FileRouter(path, spec.target, spec.model)
    if dry_run or spec.analysis.dry_run:
        router = DryRunRouter(router)
    return router
