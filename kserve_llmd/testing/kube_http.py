"""The HTTP side of ``KubeApiDouble``: URL routing, JSON bodies, ``Status`` errors and chunked watch streams."""

from __future__ import annotations

import copy
import json
import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from kserve_llmd.kube.resources import Resource, resource_for_path
from kserve_llmd.testing.kube_store import ApiError, Event, JSONObj, parse_selector, selector_matches

if TYPE_CHECKING:
    from kserve_llmd.testing.kube_double import KubeApiDouble

log = logging.getLogger(__name__)
_ROUTES = (
    re.compile(r"^/api/(?P<version>v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"),
    re.compile(
        r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
        r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"
    ),
    re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"),
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def double(self) -> KubeApiDouble:
        double: KubeApiDouble = self.server.double  # type: ignore[attr-defined]
        return double

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kube double: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --------------------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.double.requests.append((method, parts.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            resource, namespace, name, sub = self._route(parts.path)
            if (resource.plural, namespace) in self.double.forbidden:
                raise ApiError(403, "Forbidden", f'{resource.plural} is forbidden: User "system:serviceaccount:'
                               f'{namespace}:default" cannot {method.lower()} resource "{resource.plural}" in API '
                               f'group "{resource.group}" in the namespace "{namespace}"')
            body: Any = json.loads(raw) if raw else None
            if method == "GET" and name is None and query.get("watch", "").lower() in ("true", "1"):
                self._watch(resource, namespace, query)
                return
            code, result = self._verb(method, resource, namespace, name, sub, body, query)
        except ApiError as exc:
            code, result = exc.code, exc.status()
        except json.JSONDecodeError as exc:
            code, result = 400, ApiError(400, "BadRequest", f"invalid JSON body: {exc}").status()
        self._send_json(code, result)

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        for pattern in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            groups = match.groupdict()
            resource = resource_for_path(groups.get("group") or "", groups["version"], groups["plural"])
            namespace = groups.get("ns")
            if resource is not None and resource.namespaced == (namespace is not None):
                return resource, namespace, groups.get("name"), groups.get("sub")
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _verb(self, method: str, resource: Resource, namespace: str | None, name: str | None, sub: str | None,
              body: Any, query: dict[str, str]) -> tuple[int, JSONObj]:
        double = self.double
        if name is None:
            if method == "GET":
                selector = query.get("labelSelector", "")
                items, rv = double.store.list(resource.group, resource.plural, namespace, selector)
                return 200, {
                    "apiVersion": resource.api_version,
                    "kind": f"{resource.kind}List",
                    "metadata": {"resourceVersion": str(rv)},
                    "items": items,
                }
            if method == "POST":
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the body must be a JSON object")
                return 201, double.create(resource, namespace, body)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        if method == "GET":
            return 200, double.read(resource, namespace, name)
        if method in ("PATCH", "PUT"):
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            return 200, double.patch(resource, namespace, name, body, content_type, subresource=sub,
                                     replace=method == "PUT")
        if method == "DELETE":
            return 200, double.delete(resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _send_json(self, code: int, body: JSONObj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -------------------------------------------------------------------------------------------- watch
    def _watch(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> None:
        store = self.double.store
        terms = parse_selector(query.get("labelSelector", ""))
        timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        deadline = time.monotonic() + timeout if timeout is not None else None
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with store.lock:
            store.open_watches += 1
            store.changed.notify_all()
            generation = store.watch_generation
            since = query.get("resourceVersion", "")
            if since in ("", "0"):
                items, cursor = store.list(resource.group, resource.plural, namespace, query.get("labelSelector", ""))
                initial = [{"type": "ADDED", "object": item} for item in items]
            else:
                cursor, initial = int(since), []
        try:
            self._write_events(initial)
            while True:
                with store.lock:
                    while True:
                        if store.closed or generation != store.watch_generation:
                            return self._end_watch(clean=not store.drop_abruptly or store.closed)
                        if cursor < store.floor:
                            self._write_events([_expired(cursor)])
                            return self._end_watch(clean=True)
                        batch = [e for e in store.events if e.rv > cursor]
                        if batch:
                            break
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return self._end_watch(clean=True)
                        store.changed.wait(remaining)
                cursor = batch[-1].rv
                self._write_events(_translate(batch, resource, namespace, terms))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with store.lock:
                store.open_watches -= 1
                store.changed.notify_all()

    def _write_events(self, events: list[JSONObj]) -> None:
        for event in events:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_watch(self, *, clean: bool) -> None:
        self.close_connection = True
        if clean:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)


def _expired(cursor: int) -> JSONObj:
    message = f"too old resource version: {cursor}"
    return {"type": "ERROR", "object": {**ApiError(410, "Expired", message).status(), "code": 410}}


def _translate(batch: list[Event], resource: Resource, namespace: str | None,
               terms: list[tuple[str, str, tuple[str, ...]]]) -> list[JSONObj]:
    """Events as a watcher with this scope and selector sees them (leaving the selector reads as DELETED)."""
    out: list[JSONObj] = []
    for event in batch:
        if event.group != resource.group or event.plural != resource.plural:
            continue
        if namespace is not None and event.namespace != namespace:
            continue
        now, before = selector_matches(terms, event.obj), selector_matches(terms, event.old)
        if event.type == "DELETED":
            kind = "DELETED" if before else None
        elif now and before:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        else:
            kind = "DELETED" if before else None
        if kind is not None:
            out.append({"type": kind, "object": copy.deepcopy(event.obj)})
    return out
