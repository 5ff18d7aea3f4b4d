"""File router (embedded default): a manifest YAML on disk stands in for the cluster object.

Reads and writes keep the SRE's comments and layout (ruamel round-trip), write atomically (temp
file in the same directory, fsync, rename) and detect concurrent edits by content hash: a write
computed from an older version raises ConflictError. The rollout state lives in an annotation
of the object, exactly as in the cluster.

Must not: decide anything; understand rollout state (it stores strings).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from analyzer.config import TargetRef
from analyzer.rollout.weights import Target
from analyzer.routers.base import ConflictError, RoutedObject, RouterError
from analyzer.routers.objects import Routing


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 20  # keep the state annotation on one line
    y.indent(mapping=2, sequence=4, offset=2)
    return y


class FileRouter:
    def __init__(
        self, path: Path, target: TargetRef, model: str, pools: Sequence[str] = ()
    ) -> None:
        """``pools``: the rule's baseline and canary (pool names), for an HTTPRoute."""
        self.path = path
        self.target = target
        self.model = model
        self.routing = Routing(target.kind, model, self.describe, tuple(pools), target.rule_name)
        self._cache: tuple[tuple[int, int, int], RoutedObject] | None = None

    @property
    def describe(self) -> str:
        return f"{self.target.kind} {self.target.namespace}/{self.target.name} ({self.path})"

    async def check_served(self) -> None:
        """A file needs no API: whether it routes the model is checked at every read."""

    async def watch(
        self, on_change: Callable[[RoutedObject], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Not watched: a local file is read at every judgment."""

    async def read(self) -> RoutedObject:
        # Judgments read the object every interval; parse the YAML again only when the file
        # changed (a write of ours renames a new inode in; an edit changes mtime or size).
        # The stat is cheap enough for the event loop; reading and parsing the YAML is not.
        key = self._stat()
        if key is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        return await asyncio.to_thread(self._read, key)

    async def write(
        self,
        *,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        return await asyncio.to_thread(self._write, version, targets, annotations)

    # -- blocking helpers, run off the event loop --

    def _load(self) -> tuple[bytes, list[Any], CommentedMap]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise RouterError(f"cannot read manifest {self.path}: {exc.strerror}") from exc
        try:
            docs = list(_yaml().load_all(data))
        except YAMLError as exc:
            raise RouterError(f"manifest {self.path} is not valid YAML: {exc}") from exc
        for doc in docs:
            if (
                isinstance(doc, CommentedMap)
                and doc.get("kind") == self.target.kind
                and isinstance(doc.get("metadata"), dict)
                and doc["metadata"].get("name") == self.target.name
                and doc["metadata"].get("namespace", "default") == self.target.namespace
            ):
                if doc.get("apiVersion") != self.target.api_version:
                    raise RouterError(
                        f"{self.describe} is {doc.get('apiVersion')}, "
                        f"the rule names {self.target.api_version}"
                    )
                return data, docs, doc
        raise RouterError(
            f"{self.path} holds no {self.target.kind} named "
            f"{self.target.namespace}/{self.target.name}"
        )

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self, key: tuple[int, int, int] | None) -> RoutedObject:
        """The object from the file as it was at ``key`` (its stat, taken before reading)."""
        data, _, doc = self._load()
        obj = self.routing.routed(hashlib.sha256(data).hexdigest(), doc)
        self._cache = (key, obj) if key is not None else None
        return obj

    def _write(
        self,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        data, docs, doc = self._load()
        if hashlib.sha256(data).hexdigest() != version:
            raise ConflictError(f"{self.describe} changed since it was read")
        if targets is not None:
            self.routing.write(doc, targets)
        meta = doc["metadata"]
        ann = meta.get("annotations")
        if ann is None:
            ann = CommentedMap()
            meta["annotations"] = ann
        for key, value in annotations.items():
            if value is None:
                ann.pop(key, None)
            else:
                ann[key] = value
        if not ann:
            del meta["annotations"]
        buf = io.BytesIO()
        _yaml().dump_all(docs, buf)
        out = buf.getvalue()
        mode = self.path.stat().st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(out)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.routing.routed(hashlib.sha256(out).hexdigest(), doc)
