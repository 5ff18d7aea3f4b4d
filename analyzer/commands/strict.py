"""``rules validate --strict``: what a rule needs from where it will run, beyond its syntax —
its secrets set, its manifest there and routing its model.

Must not: print secret values, write to a manifest, or talk to a cluster.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from analyzer.config import LoadedRule, SecretRef
from analyzer.routers.base import RouterError
from analyzer.routers.factory import make_router


def secret_refs(node: object) -> Iterator[SecretRef]:
    """Every secret reference in a rule (notifications, gates, Prometheus auth...)."""
    if isinstance(node, SecretRef):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from secret_refs(getattr(node, name))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from secret_refs(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from secret_refs(item)


def _missing(ref: SecretRef) -> str | None:
    if ref.env is not None:
        return None if os.environ.get(ref.env) else f"env {ref.env}"
    assert ref.file is not None
    path = Path(ref.file)
    return None if path.is_file() and os.access(path, os.R_OK) else f"file {ref.file}"


def problems(loaded: LoadedRule) -> tuple[list[str], list[str]]:
    """(problems, notes) of one rule, each a line that names the fix."""
    where = f"{loaded.source}:{loaded.line}: rule {loaded.name}"
    found: list[str] = []
    notes: list[str] = []
    missing = sorted({m for ref in secret_refs(loaded.rule.spec) if (m := _missing(ref))})
    if missing:
        found.append(f"{where}: secrets not set or not readable: {', '.join(missing)}")
    manifest = loaded.manifest_path
    if manifest is not None:
        notes.append(
            f"{where}: target.file is set: embedded mode only (run --events / replay); the "
            "daemon refuses it in a pod, so leave it out of rules you deploy"
        )
        try:
            asyncio.run(make_router(loaded).read())
        except RouterError as exc:
            found.append(f"{where}: target.file: {exc}")
    return found, notes
