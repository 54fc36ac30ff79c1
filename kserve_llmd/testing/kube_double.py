"""``KubeApiDouble``: a small Kubernetes API server over real loopback HTTP, for tests and the cluster example.

No API server can run on these machines, so this double serves the REST subset kserve-llmd uses, to the real
``kubernetes`` client: namespaced and cluster-scoped objects of the kinds in ``kube/resources.py``; create (409
AlreadyExists), get (404 NotFound), JSON merge patch (strategic merge patch is treated as a merge patch; JSON patch
and server-side apply answer 415), replace, delete, list with ``resourceVersion`` and ``labelSelector``, and watch
(chunked JSON lines; ``ERROR`` 410 Expired when the resource version is older than the retained event window).

Custom objects are validated against the real CRD schemas (``validator``; 422 Invalid names the field) and walked
through realistic statuses by pretend controllers (``kube_status.py``), one stage per tick. Tests drive it with
``hold``/``fail``/``set_url`` hooks, ``advance`` (manual ticks), ``compact`` (force 410), ``drop_watches`` and
``put_pod``/``set_pod``/``delete_pod``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from kserve_llmd.kube.resources import Resource, resource_for_kind
from kserve_llmd.testing.kube_http import Handler
from kserve_llmd.testing.kube_status import WALKED_KINDS, Failure, render_status
from kserve_llmd.testing.kube_store import ApiError, JSONObj, Key, Store, merge_patch

log = logging.getLogger(__name__)
Validator = Callable[[JSONObj], None]
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def crd_validator() -> Validator | None:
    """The strict CRD validator from ``kserve_llmd.kube.crds`` (None when that module is not available)."""
    try:
        from kserve_llmd.kube import crds
    except ImportError:
        return None
    validate: Validator = crds.validate
    return validate


class KubeApiDouble:
    """See the module docstring. ``start()`` binds 127.0.0.1 on an ephemeral port; ``url`` is the API host."""

    def __init__(
        self,
        *,
        validator: Validator | None = None,
        window: int = 1000,
        tick_interval: float | None = 0.02,
        validate: bool = True,
    ) -> None:
        self.store = Store(window)
        self._validator = validator
        self._validate = validate
        self._tick_interval = tick_interval
        self._stages: dict[Key, int] = {}
        self._holds: set[tuple[str, str, str]] = set()
        self._failures: dict[tuple[str, str, str], Failure] = {}
        self._urls: dict[tuple[str, str, str], str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.url = ""
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        #: ``(plural, namespace)`` pairs answered 403 Forbidden, as for a service account without RBAC.
        self.forbidden: set[tuple[str, str | None]] = set()

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._validate and self._validator is None:
            self._validator = crd_validator()
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.double = self  # type: ignore[attr-defined]
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._spawn(lambda: server.serve_forever(poll_interval=0.05), "kube-double-http")
        if self._tick_interval is not None:
            self._spawn(self._tick_loop, "kube-double-ticks")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self.store.lock:
            self.store.closed = True
            self.store.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> KubeApiDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_client(self) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this double."""
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))

    # ------------------------------------------------------------------------------------------- test hooks
    def hold(self, kind: str, name: str, namespace: str = "default") -> None:
        """The named object (now or once created) never becomes ready."""
        self._holds.add((kind, namespace, name))

    def fail(self, kind: str, name: str, namespace: str = "default", *, condition: str, reason: str,
             message: str) -> None:
        """The named object's walk stops with ``condition`` False (and Ready False) for ``reason``."""
        self._failures[(kind, namespace, name)] = Failure(condition, reason, message)

    def set_url(self, kind: str, name: str, namespace: str, url: str) -> None:
        """The ``status.url`` the object reports once ready (default ``http://NAME-NAMESPACE.example.com``)."""
        self._urls[(kind, namespace, name)] = url

    def advance(self, ticks: int = 1) -> None:
        """Move every walking object ``ticks`` stages on (the tick thread does this every ``tick_interval``)."""
        for _ in range(ticks):
            self._tick()

    def compact(self) -> None:
        self.store.compact()

    def drop_watches(self, *, abrupt: bool = True) -> None:
        """End every open watch: ``abrupt`` resets the connection; otherwise the stream ends cleanly."""
        with self.store.lock:
            self.store.watch_generation += 1
            self.store.drop_abruptly = abrupt
            self.store.changed.notify_all()

    def wait_for_watches(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until at least ``count`` watch streams are open (so a drop or a change reaches a live watch)."""
        with self.store.lock:
            if not self.store.changed.wait_for(lambda: self.store.open_watches >= count, timeout):
                raise TimeoutError(f"{self.store.open_watches} watch(es) open, wanted {count}")

    def get(self, kind: str, name: str, namespace: str = "default") -> JSONObj | None:
        resource = resource_for_kind(kind)
        return self.store.get(self._key(resource, namespace, name))

    def put_pod(self, name: str, *, namespace: str = "default", labels: dict[str, str] | None = None,
                ip: str | None = None, ready: bool = False, phase: str = "Running") -> JSONObj:
        """Create or replace a pod as the kubelet would report it."""
        pod: JSONObj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "engine", "image": "kserve-llmd-sim"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }
        if ip is not None:
            pod["status"]["podIP"] = ip
        key = self._key(resource_for_kind("Pod"), namespace, name)
        with self.store.lock:
            old = self.store.objects.get(key)
            if old is not None:
                pod["metadata"]["uid"] = old["metadata"]["uid"]
            return self.store.put(key, pod, created=old is None)

    def set_pod(self, name: str, *, namespace: str = "default", ready: bool | None = None,
                ip: str | None = None, labels: dict[str, str] | None = None) -> JSONObj:
        """Change a pod's readiness, IP or labels (a MODIFIED event)."""
        key = self._key(resource_for_kind("Pod"), namespace, name)
        with self.store.lock:
            pod = self.store.objects[key]
            patch: JSONObj = {}
            if ready is not None:
                patch["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
            if ip is not None:
                patch.setdefault("status", {})["podIP"] = ip
            if labels is not None:
                patch["metadata"] = {"labels": labels}
            return self.store.put(key, merge_patch(pod, patch), created=False)

    def delete_pod(self, name: str, namespace: str = "default") -> None:
        self.store.remove(self._key(resource_for_kind("Pod"), namespace, name))

    # ------------------------------------------------------------------------------------------- REST verbs
    @staticmethod
    def _key(resource: Resource, namespace: str | None, name: str) -> Key:
        return (resource.group, resource.plural, namespace or "", name)

    @staticmethod
    def _not_found(resource: Resource, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{resource.plural}.{resource.group or "core"} "{name}" not found')

    def create(self, resource: Resource, namespace: str | None, body: JSONObj) -> JSONObj:
        name = body.get("metadata", {}).get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ApiError(422, "Invalid", f"{resource.kind} metadata.name {name!r} is invalid", field="metadata.name")
        if namespace is not None:
            body_ns = body["metadata"].get("namespace")
            if body_ns not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
            body["metadata"]["namespace"] = namespace
        if body.get("kind") not in (None, resource.kind):
            raise ApiError(400, "BadRequest", f"kind {body.get('kind')!r} does not match {resource.plural}")
        body.setdefault("apiVersion", resource.api_version)
        body.setdefault("kind", resource.kind)
        key = self._key(resource, namespace, name)
        with self.store.lock:
            if key in self.store.objects:
                raise ApiError(409, "AlreadyExists", f'{resource.plural}.{resource.group} "{name}" already exists')
            if resource.custom:
                body.pop("status", None)
                body["metadata"]["generation"] = 1
            self._check(resource, body)
            if resource.custom and resource.kind in WALKED_KINDS:
                self._stages[key] = 0
                body["status"], _ = render_status(body, 0, url="")
            return self.store.put(key, body, created=True)

    def read(self, resource: Resource, namespace: str | None, name: str) -> JSONObj:
        obj = self.store.get(self._key(resource, namespace, name))
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    def patch(self, resource: Resource, namespace: str | None, name: str, body: Any, content_type: str,
              *, subresource: str | None = None, replace: bool = False) -> JSONObj:
        if not replace and content_type not in _MERGE_TYPES:
            raise ApiError(415, "UnsupportedMediaType", f"the double supports only merge patches, not {content_type}")
        key = self._key(resource, namespace, name)
        with self.store.lock:
            current = self.store.objects.get(key)
            if current is None:
                raise self._not_found(resource, name)
            merged: JSONObj = body if replace else merge_patch(current, body)
            merged["metadata"] = {**merged.get("metadata", {}), "name": name, "uid": current["metadata"]["uid"]}
            if namespace is not None:
                merged["metadata"]["namespace"] = namespace
            if resource.custom:
                if subresource == "status":
                    merged = {**current, "status": merged.get("status")}
                else:
                    merged["status"] = current.get("status")
                    if merged.get("spec") != current.get("spec"):
                        merged["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
                        if resource.kind in WALKED_KINDS:
                            self._stages[key] = 0
            self._check(resource, {k: v for k, v in merged.items() if k != "status" or not resource.custom})
            return self.store.put(key, merged, created=False)

    def delete(self, resource: Resource, namespace: str | None, name: str) -> JSONObj:
        key = self._key(resource, namespace, name)
        with self.store.lock:
            self._stages.pop(key, None)
            obj = self.store.remove(key)
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    def _check(self, resource: Resource, body: JSONObj) -> None:
        if self._validator is None:
            return
        from kserve_llmd.errors import KubeError

        try:
            self._validator(json.loads(json.dumps(body)))
        except KubeError as exc:
            name = body["metadata"]["name"]
            raise ApiError(422, "Invalid", f'{resource.kind}.{resource.group} "{name}" is invalid: {exc.message}',
                           field=exc.param) from None

    # ------------------------------------------------------------------------------------------- controllers
    def _tick_loop(self) -> None:
        assert self._tick_interval is not None
        while not self._stop.wait(self._tick_interval):
            self._tick()

    def _tick(self) -> None:
        with self.store.lock:
            for key, stage in list(self._stages.items()):
                obj = self.store.objects.get(key)
                if obj is None:
                    self._stages.pop(key, None)
                    continue
                meta = obj["metadata"]
                ident = (obj["kind"], meta.get("namespace", ""), meta["name"])
                if ident in self._holds:
                    continue
                default_url = f"http://{meta['name']}-{meta.get('namespace', 'default')}.example.com"
                url = self._urls.get(ident, default_url)
                status, done = render_status(obj, stage + 1, url=url, failure=self._failures.get(ident))
                self._stages[key] = stage + 1
                if done:
                    del self._stages[key]
                self.store.put(key, {**obj, "status": status}, created=False)
