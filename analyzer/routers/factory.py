"""Picks the router for a rule: the manifest file in embedded mode, dry-run wrapping if asked.

Must not: hold state of its own.
"""

from __future__ import annotations

from kubernetes_asyncio.client import ApiClient

from analyzer.config import LoadedRule
from analyzer.routers.base import RouterError, TrafficRouter
from analyzer.routers.dryrun import DryRunRouter
from analyzer.routers.file import FileRouter
from analyzer.routers.kube import KubeRouter


def make_router(
    loaded: LoadedRule, dry_run: bool = False, api: ApiClient | None = None
) -> TrafficRouter:
    """The manifest file when the rule names one, else the cluster object through ``api``."""
    spec = loaded.rule.spec
    path = loaded.manifest_path
    router: TrafficRouter
    pools = (*spec.baseline, *spec.canary)
    if path is not None:
        router = FileRouter(path, spec.target, spec.model, pools=pools)
    elif api is not None:
        router = KubeRouter(api, spec.target, spec.model, pools=pools)
    else:
        raise RouterError(
            f"rule {loaded.name}: spec.target.file is required in embedded mode "
            "(no Kubernetes API client was configured)"
        )
    if dry_run or spec.analysis.dry_run:
        router = DryRunRouter(router)
    return router
