"""Kubernetes router: the InferenceModel / InferenceModelRewrite / HTTPRoute in the cluster.

Reads with GET, writes with one JSON merge patch that carries the ``resourceVersion`` it was
computed from, the model's whole target list (merge patches replace lists) and the rollout's
state annotation: weights and state change together or not at all, and a stale write gets 409
from the API server, which the controller answers by re-reading and deciding again.

Every request has a client timeout; an API that is unreachable, times out, is overloaded (429,
5xx) or has lost the object (404: deleted, perhaps being recreated) raises
``TransientRouterError``, which the controller retries; only answers that cannot change by
waiting (422, 403, a malformed object) raise ``RouterError``.

Must not: decide anything; write anything but the model's targets and our annotations.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from analyzer.config import TargetRef
from analyzer.rollout.weights import Target
from analyzer.routers.base import (
    ConflictError,
    RoutedObject,
    RouterError,
    TransientRouterError,
)
from analyzer.routers.objects import Routing

log = structlog.get_logger("analyzer.kube")
PLURALS = {
    "InferenceModel": "inferencemodels",
    "InferenceModelRewrite": "inferencemodelrewrites",
    "HTTPRoute": "httproutes",
}
LLM_D_GROUP = "llm-d.ai"
REQUEST_TIMEOUT = 10.0
"""Seconds one API request may take: a hung API server must not hold judging or ingestion."""
TRANSIENT_STATUS = frozenset({404, 408, 429, 500, 502, 503, 504})
WATCH_RETRY_MAX = 30.0


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def api_failure(what: str, exc: BaseException) -> RouterError:
    """The router error an API failure means: transient (retry) or not; ``what``: whose."""
    if isinstance(exc, ApiException):
        message = f"{what}: API error {exc.status}: {_api_message(exc)}"
        if exc.status == 409:
            return ConflictError(f"{what} changed since it was read")
        if exc.status == 404:
            return TransientRouterError(f"{what} not found (deleted? waiting for it)")
        if exc.status in TRANSIENT_STATUS:
            return TransientRouterError(message)
        if exc.status == 422:
            return RouterError(f"the API server refused the new {what}: {_api_message(exc)}")
        return RouterError(message)
    if isinstance(exc, TimeoutError):
        return TransientRouterError(f"{what}: the API server did not answer in time")
    return TransientRouterError(f"{what}: API server unreachable: {exc!r}")


UNREACHABLE = (aiohttp.ClientError, TimeoutError, ConnectionError)


class KubeRouter:
    def __init__(
        self,
        api: client.ApiClient,
        target: TargetRef,
        model: str,
        timeout: float = REQUEST_TIMEOUT,
        pools: Sequence[str] = (),
    ) -> None:
        """``pools``: the rule's baseline and canary (pool names), for an HTTPRoute."""
        self.api = api
        self.timeout = timeout
        self.custom = client.CustomObjectsApi(api)
        self.target = target
        self.model = model
        self.group, self.version = target.api_version.split("/")
        self.plural = PLURALS[target.kind]
        self.routing = Routing(target.kind, model, self.describe, tuple(pools), target.rule_name)
        self._last: dict[str, Any] | None = None

    @property
    def describe(self) -> str:
        t = self.target
        return f"{t.kind} {t.namespace}/{t.name} ({t.api_version})"

    async def check_served(self) -> None:
        """A clear error when the cluster does not serve the rule's apiVersion."""
        try:
            groups = await client.ApisApi(self.api).get_api_versions(_request_timeout=self.timeout)
        except ApiException as exc:
            raise RouterError(f"API discovery failed: {_api_message(exc)}") from None
        except UNREACHABLE as exc:
            raise api_failure("API discovery", exc) from None
        by_name = {g.name: [v.version for v in g.versions] for g in groups.groups or []}
        served = by_name.get(self.group)
        if served is None:
            raise RouterError(f"API group {self.group} is not installed in this cluster (no CRD)")
        if self.version not in served:
            raise RouterError(
                f"{self.target.api_version} is not served by this cluster; "
                f"{self.group} serves: {', '.join(served)}"
            )
        if self.plural == PLURALS["InferenceModelRewrite"] and self.group != LLM_D_GROUP:
            await self._refuse_the_ignored_group(by_name.get(LLM_D_GROUP, []))

    async def _refuse_the_ignored_group(self, llm_d_versions: list[str]) -> None:
        """With both InferenceModelRewrite groups served, llm-d's endpoint picker reads the
        llm-d.ai objects and ignores the legacy ones: weights written there would change
        nothing, silently."""
        for version in llm_d_versions:
            try:
                listed = await self.custom.get_api_resources(
                    LLM_D_GROUP, version, _request_timeout=self.timeout
                )
            except (ApiException, *UNREACHABLE) as exc:
                raise api_failure(f"API discovery of {LLM_D_GROUP}/{version}", exc) from None
            if any(r.name == self.plural for r in listed.resources or []):
                raise RouterError(
                    f"this cluster serves InferenceModelRewrite in both {self.group} and "
                    f"{LLM_D_GROUP}/{version}; the endpoint picker reads {LLM_D_GROUP} and "
                    f"ignores {self.target.api_version} objects, so weights written there "
                    f"would not move traffic: set target.apiVersion: {LLM_D_GROUP}/{version} "
                    "(and route the model in that object)"
                )

    def _routed(self, obj: dict[str, Any]) -> RoutedObject:
        return self.routing.routed(str(obj["metadata"]["resourceVersion"]), obj)

    async def read(self) -> RoutedObject:
        t = self.target
        try:
            obj = await self.custom.get_namespaced_custom_object(
                self.group,
                self.version,
                t.namespace,
                self.plural,
                t.name,
                _request_timeout=self.timeout,
            )
        except (ApiException, *UNREACHABLE) as exc:
            raise api_failure(self.describe, exc) from None
        self._last = obj
        return self._routed(obj)

    async def watch(
        self,
        on_change: Callable[[RoutedObject], Awaitable[None]],
        stop: asyncio.Event,
        timeout_seconds: int = 300,
    ) -> None:
        """List, then watch from the list's resourceVersion; re-list on 410 Gone. A failing
        API (transient or not) is retried with backoff, never raised: the judgments read the
        object anyway, the watch only makes reactions faster."""
        failures = 0
        while not stop.is_set():
            try:
                await self._watch_once(on_change, stop, timeout_seconds)
                failures = 0
            except (ApiException, RouterError, *UNREACHABLE) as exc:
                failures += 1
                delay = min(WATCH_RETRY_MAX, 0.5 * 2**failures)
                error = exc if isinstance(exc, RouterError) else api_failure(self.describe, exc)
                log.warning("watch_failed", object=self.describe, error=str(error), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _watch_once(
        self,
        on_change: Callable[[RoutedObject], Awaitable[None]],
        stop: asyncio.Event,
        timeout_seconds: int,
    ) -> None:
        t = self.target
        selector = f"metadata.name={t.name}"
        while not stop.is_set():
            listed = await self.custom.list_namespaced_custom_object(
                self.group,
                self.version,
                t.namespace,
                self.plural,
                field_selector=selector,
                _request_timeout=self.timeout,
            )
            version = listed["metadata"]["resourceVersion"]
            for item in listed.get("items", []):
                await on_change(self._routed(item))
            stream = watch.Watch()
            try:
                async for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    self.group,
                    self.version,
                    t.namespace,
                    self.plural,
                    field_selector=selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=timeout_seconds,
                    # connect bounded; a quiet watch may read nothing until its server timeout
                    _request_timeout=(self.timeout, timeout_seconds + self.timeout),
                ):
                    if stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        await on_change(self._routed(event["raw_object"]))
            except ApiException as exc:
                if exc.status != 410:
                    raise
                log.info("watch_expired", object=self.describe)  # 410 Gone: list again
            finally:
                stream.stop()

    async def write(
        self,
        *,
        version: str,
        targets: Sequence[Target] | None,
        annotations: Mapping[str, str | None],
    ) -> RoutedObject:
        base = self._last
        if base is None or str(base["metadata"]["resourceVersion"]) != version:
            await self.read()
            base = self._last
            assert base is not None
            if str(base["metadata"]["resourceVersion"]) != version:
                raise ConflictError(f"{self.describe} changed since it was read")
        patch: dict[str, Any] = {
            "metadata": {"resourceVersion": version, "annotations": dict(annotations)}
        }
        if targets is not None:
            new = copy.deepcopy(base)
            self.routing.write(new, targets)
            # A merge patch replaces lists whole: the whole list that holds the targets.
            if self.target.kind == "InferenceModel":
                patch["spec"] = {"targetModels": new["spec"]["targetModels"]}
            else:
                patch["spec"] = {"rules": new["spec"]["rules"]}
        t = self.target
        try:
            obj = await self.custom.patch_namespaced_custom_object(
                self.group,
                self.version,
                t.namespace,
                self.plural,
                t.name,
                patch,
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=self.timeout,
            )
        except (ApiException, *UNREACHABLE) as exc:
            raise api_failure(self.describe, exc) from None
        self._last = obj
        return self._routed(obj)
