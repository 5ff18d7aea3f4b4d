"""An HTTP Kubernetes API server emulator for the custom resources we route, for tests.

It behaves like the API server where the routers depend on it: every object has a
resourceVersion and a generation (bumped when the spec changes); a write (PUT, or a PATCH
carrying metadata.resourceVersion) computed from a stale version gets 409 Conflict;
merge-patch (RFC 7386) and JSON-patch (RFC 6902) semantics, lists replaced whole by merge
patches; every object written gets its CRD's defaults and is validated against its
openAPIV3Schema and CEL rules (tests/servers/crd.py), 422 when invalid; discovery of served
versions. A fault layer in front (``inject``) answers chosen requests with an error status,
a hang, or a connection reset, as a failing or overloaded API server would.
Runs aiohttp in its own thread so the real kubernetes_asyncio client can talk to it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jsonpatch
from aiohttp import ClientConnectionResetError, web
from ruamel.yaml import YAML

from tests.servers.crd import CRD_DIR, default, validate
from tests.servers.threaded import ThreadedServer

Key = tuple[str, str, str, str, str]  # group, version, namespace, plural, name


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _generation(old: dict[str, Any] | None, new: dict[str, Any]) -> int:
    """metadata.generation as the API server keeps it: 1 at creation, +1 on a change of spec
    (not of metadata or status)."""
    if old is None:
        return 1
    seen = int(old["metadata"].get("generation", 1))
    return seen + 1 if old.get("spec") != new.get("spec") else seen


@dataclass
class Fault:
    """What the next ``times`` requests whose path contains ``path`` (and whose method is
    ``method``, when given) get instead of the emulator's answer."""

    kind: Literal["status", "hang", "reset"]
    times: int = 1
    status: int = 500
    seconds: float = 60.0
    path: str = "/apis/"
    method: str | None = None

    def matches(self, request: web.Request) -> bool:
        return self.path in request.path and self.method in (None, request.method)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class KubeApi(ThreadedServer):
    def __init__(self, crd_dir: Path = CRD_DIR, without: tuple[str, ...] = ()) -> None:
        """``without``: leave out the CRD files whose names contain one of these."""
        self.resources: dict[tuple[str, str], tuple[str, str]] = {}  # (group, plural)->(kind,..)
        self.served: dict[str, list[str]] = {}
        for path in crd_dir.glob("*.yaml"):
            if any(part in path.name for part in without):
                continue
            crd = YAML(typ="safe").load(path.read_text())
            group, names = crd["spec"]["group"], crd["spec"]["names"]
            for v in crd["spec"]["versions"]:
                if v.get("served", True):
                    self.served.setdefault(group, []).append(v["name"])
                    self.resources[(group, names["plural"])] = (names["kind"], names["plural"])
        self.objects: dict[Key, dict[str, Any]] = {}
        self.rv = 100
        self.writes: list[tuple[str, Key]] = []
        self.write_times: list[float] = []
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.changelog: list[tuple[int, str, Key, dict[str, Any]]] = []
        self.expire_next_watch = False
        self.lists = 0
        self.watches = 0
        self.events: list[dict[str, Any]] = []
        self.before_write: Callable[[Key], None] | None = None
        self.faults: list[Fault] = []
        self.faulted: list[tuple[str, str, str]] = []
        """(kind, method, path) of every request a fault answered."""
        self._fault_lock = threading.Lock()
        super().__init__()

    # -- faults --

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each answers requests it matches until its ``times`` are used."""
        with self._fault_lock:
            self.faults.extend(faults)

    def heal(self) -> None:
        """Drop every fault still queued."""
        with self._fault_lock:
            self.faults.clear()

    def _take_fault(self, request: web.Request) -> Fault | None:
        with self._fault_lock:
            for fault in self.faults:
                if fault.matches(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    self.faulted.append((fault.kind, request.method, request.path))
                    return fault
        return None

    @web.middleware
    async def _fault_layer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = self._take_fault(request)
        if fault is None:
            return await handler(request)
        if fault.kind == "status":
            return _status(fault.status, "InternalError", f"injected fault {fault.status}")
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)  # the client's timeout should end it first
            return await handler(request)
        assert request.transport is not None
        request.transport.abort()  # a connection reset, mid-request
        return web.Response(status=500)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "default") -> None:
        """Delete an object as an admin would (kubectl delete)."""
        group, version = api_version.split("/")
        for key, obj in list(self.objects.items()):
            if key[:3] == (group, version, namespace) and key[4] == name and obj["kind"] == kind:
                del self.objects[key]
                self.rv += 1
                self.changelog.append((self.rv, "DELETED", key, copy.deepcopy(obj)))
                return
        raise KeyError(name)

    # -- direct access for tests --

    def put(self, obj: dict[str, Any]) -> None:
        """Create or replace an object as an admin would (kubectl apply), validated."""
        group, version = obj["apiVersion"].split("/")
        plural = next(
            p for (g, p), (k, _) in self.resources.items() if g == group and k == obj["kind"]
        )
        meta = obj.setdefault("metadata", {})
        key = (group, version, meta.get("namespace", "default"), plural, meta["name"])
        default(obj)
        errors = validate(obj, self.objects.get(key))
        assert not errors, errors
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta["generation"] = _generation(self.objects.get(key), obj)
        meta.setdefault("namespace", "default")
        kind = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[key] = copy.deepcopy(obj)
        self.changelog.append((self.rv, kind, key, copy.deepcopy(obj)))

    def get(self, api_version: str, kind: str, name: str, namespace: str = "default") -> Any:
        group, version = api_version.split("/")
        for (g, v, ns, _, n), obj in self.objects.items():
            if (g, v, ns, n) == (group, version, namespace, name) and obj["kind"] == kind:
                return copy.deepcopy(obj)
        raise KeyError(name)

    # -- HTTP --

    async def _discovery(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group")
        if group is None:
            groups = [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs]}
                for g, vs in self.served.items()
            ]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        version = request.match_info["version"]
        if version not in self.served.get(group, []):
            return _status(404, "NotFound", f"{group}/{version} is not served")
        resources = [
            {
                "name": p,
                "singularName": k.lower(),
                "kind": k,
                "namespaced": True,
                "verbs": ["get", "list", "watch", "patch", "update"],
            }
            for (g, p), (k, _) in self.resources.items()
            if g == group
        ]
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}",
                "resources": resources,
            }
        )

    def _key(self, request: web.Request) -> Key:
        m = request.match_info
        return (m["group"], m["version"], m["namespace"], m["plural"], m["name"])

    async def _object(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if key[1] not in self.served.get(key[0], []):
            return _status(404, "NotFound", f"{key[0]}/{key[1]} is not served")
        current = self.objects.get(key)
        if current is None:
            return _status(404, "NotFound", f'{key[3]} "{key[4]}" not found')
        if request.method == "GET":
            return web.json_response(current)
        body = json.loads(await request.read())
        ctype = request.headers.get("Content-Type", "")
        if request.method == "PUT":
            new, sent_rv = body, body.get("metadata", {}).get("resourceVersion")
        elif "json-patch" in ctype:
            try:
                new = jsonpatch.apply_patch(current, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                code = 409 if isinstance(exc, jsonpatch.JsonPatchTestFailed) else 422
                return _status(code, "Conflict" if code == 409 else "Invalid", str(exc))
            sent_rv = None
        elif "merge-patch" in ctype:
            new = merge_patch(current, body)
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        else:
            return _status(415, "UnsupportedMediaType", f"content type {ctype!r}")
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(key)  # a concurrent writer gets in first
            current = self.objects[key]
        if sent_rv is not None and sent_rv != current["metadata"]["resourceVersion"]:
            return _status(
                409,
                "Conflict",
                "the object has been modified; please apply your "
                "changes to the latest version and try again",
            )
        default(new)
        errors = validate(new, current)
        if errors:
            return _status(422, "Invalid", "; ".join(errors))
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        new["metadata"]["generation"] = _generation(current, new)
        self.objects[key] = new
        self.changelog.append((self.rv, "MODIFIED", key, copy.deepcopy(new)))
        self.writes.append((request.method, key))
        self.write_times.append(time.time())
        return web.json_response(new)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        """List, or watch (with bookmarks) from a resourceVersion; ERROR 410 when expired."""
        m = request.match_info
        scope = (m["group"], m["version"], m["namespace"], m["plural"])
        selector = request.query.get("fieldSelector", "")
        name = selector.split("=", 1)[1] if selector.startswith("metadata.name=") else None

        def match(key: Key) -> bool:
            return key[:4] == scope and (name is None or key[4] == name)

        if request.query.get("watch") not in ("true", "1", "True"):
            self.lists += 1
            items = [copy.deepcopy(o) for k, o in self.objects.items() if match(k)]
            return web.json_response(
                {
                    "apiVersion": f"{scope[0]}/{scope[1]}",
                    "kind": "List",
                    "metadata": {"resourceVersion": str(self.rv)},
                    "items": items,
                }
            )
        self.watches += 1
        sent = int(request.query.get("resourceVersion") or self.rv)
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)

        async def emit(kind: str, obj: dict[str, Any]) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        if self.expire_next_watch:
            self.expire_next_watch = False
            await emit(
                "ERROR",
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "too old resource version",
                    "reason": "Expired",
                    "code": 410,
                },
            )
            return resp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.query.get("timeoutSeconds", "30"))
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1", "True")
        last_bookmark = loop.time()
        try:
            while loop.time() < deadline:
                for rv, kind, key, obj in list(self.changelog):
                    if rv > sent and match(key):
                        await emit(kind, obj)
                        sent = rv
                if bookmarks and loop.time() - last_bookmark > 0.5:
                    await emit(
                        "BOOKMARK",
                        {
                            "kind": "List",
                            "apiVersion": f"{scope[0]}/{scope[1]}",
                            "metadata": {"resourceVersion": str(self.rv)},
                        },
                    )
                    last_bookmark = loop.time()
                await asyncio.sleep(0.05)
        except (ConnectionResetError, ClientConnectionResetError):
            pass  # the watcher went away
        return resp

    async def _leases(self, request: web.Request) -> web.Response:
        """coordination.k8s.io/v1 Leases: create, get, replace with resourceVersion checks."""
        ns, name = request.match_info["namespace"], request.match_info.get("name")
        if request.method == "POST":
            body = json.loads(await request.read())
            key = (ns, body["metadata"]["name"])
            if key in self.leases:
                return _status(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        else:
            key = (ns, name or "")
            if key not in self.leases:
                return _status(404, "NotFound", f'leases "{name}" not found')
            if request.method == "GET":
                return web.json_response(self.leases[key])
            body = json.loads(await request.read())
            sent = body.get("metadata", {}).get("resourceVersion")
            if sent != self.leases[key]["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
        self.rv += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        body["metadata"]["namespace"] = ns
        body.setdefault("apiVersion", "coordination.k8s.io/v1")
        body.setdefault("kind", "Lease")
        self.leases[key] = body
        return web.json_response(body, status=201 if request.method == "POST" else 200)

    async def _events(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.rv += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        self.events.append(body)
        return web.json_response(body, status=201)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_layer])
        lease = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        app.router.add_post(lease, self._leases)
        app.router.add_route("*", lease + "/{name}", self._leases)
        app.router.add_post("/api/v1/namespaces/{namespace}/events", self._events)
        app.router.add_get("/apis", self._discovery)
        app.router.add_get("/apis/", self._discovery)
        app.router.add_get("/apis/{group}/{version}", self._discovery)
        collection = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        app.router.add_get(collection, self._collection)
        path = collection + "/{name}"
        app.router.add_route("*", path, self._object)
        return app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at this emulator, as the daemon would be given one."""
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
            f"clusters:\n- name: e\n  cluster: {{server: '{self.url}'}}\n"
            "users:\n- name: u\n  user: {token: x}\n"
            "contexts:\n- name: t\n  context: {cluster: e, user: u}\n"
        )
        return path
