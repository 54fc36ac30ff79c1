"""Cluster operations through the ``kubernetes`` client: ``apply``, ``wait_ready``, ``get_object``, ``delete``.

Where the cluster is comes from a :class:`KubeConfig` (a kubeconfig file, in-cluster service account, or an
explicit host), parsed once at the entry point into a ``kubernetes.client.ApiClient`` that is passed down.

``apply`` creates each object, or JSON-merge-patches it when it already exists (409). It is not server-side apply:
fields removed from a manifest are not removed from the live object (delete and re-apply for that), and there is
no field ownership. Requests go through ``ApiClient.call_api`` with explicit paths (``resources.py``) so every kind,
core or custom, is patched with ``application/merge-patch+json`` (the generated core ``patch_*`` methods pick
``json-patch+json`` for a dict body in kubernetes 30).

Errors: 422 from the API server → ``ManifestValidationError`` (``param`` = the field the server named); other API
failures → ``KubeError``; a timeout in ``wait_ready`` → ``NotReadyError`` naming the condition and its reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kserve_llmd.errors import KubeError, ManifestValidationError, NotReadyError
from kserve_llmd.kube.resources import Resource, object_name, resource_for_kind, resource_for_object
from kserve_llmd.types import JSON, Clock

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
#: An explicit API host (no auth): tests, the API double, ``kubectl proxy``.
HOST_ENV = "KSERVE_LLMD_KUBE_HOST"
#: KServe's model states that will not recover without a spec change: wait_ready fails at once on them.
_TERMINAL_TRANSITIONS = frozenset({"BlockedByFailedLoad", "InvalidSpec"})


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """Where the API server is. Exactly one source: ``host`` (no auth; tests, ``kubectl proxy``), ``in_cluster``
    (the pod's service account) or ``kubeconfig`` (a file; ``context`` picks one; None = ``~/.kube/config``)."""

    host: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> KubeConfig:
        """The usual order: ``KSERVE_LLMD_KUBE_HOST`` (explicit host), in a pod (``KUBERNETES_SERVICE_HOST``),
        else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``). Call it at the entry point, with ``os.environ``."""
        if environ.get(HOST_ENV):
            return cls(host=environ[HOST_ENV])
        if environ.get("KUBERNETES_SERVICE_HOST"):
            return cls(in_cluster=True)
        return cls(kubeconfig=environ.get("KUBECONFIG") or None)

    def api_client(self) -> Any:
        """Build the ``kubernetes.client.ApiClient`` (reads the kubeconfig or service-account files: I/O)."""
        from kubernetes import client, config

        if self.host is not None:
            return client.ApiClient(client.Configuration(host=self.host))
        configuration = client.Configuration()
        if self.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=self.kubeconfig, context=self.context,
                                    client_configuration=configuration)
        return client.ApiClient(configuration)


def _call(api_client: Any, method: str, path: str, body: Any = None, *, query: list[tuple[str, str]] | None = None,
          content_type: str = "application/json") -> JSON:
    """One REST call through the real client; returns the decoded JSON body."""
    result: JSON = api_client.call_api(
        path, method, query_params=query or [], header_params={"Accept": "application/json",
                                                               "Content-Type": content_type},
        body=body, response_type="object", auth_settings=["BearerToken"], _return_http_data_only=True,
    )
    return result


def _api_error(exc: Any, what: str) -> KubeError:
    """An ``ApiException`` as our error: 422 names the field from the server's ``Status``."""
    import json

    try:
        status = json.loads(exc.body) if exc.body else {}
    except ValueError:
        status = {}
    message = status.get("message") or exc.reason or "no message"
    if exc.status == 422:
        causes = (status.get("details") or {}).get("causes") or [{}]
        return ManifestValidationError(f"{what}: {message}", param=causes[0].get("field"))
    return KubeError(f"{what}: HTTP {exc.status} {status.get('reason', '')}: {message}".replace("  ", " "))


def _target(obj: JSON, namespace: str | None) -> tuple[Resource, str | None, str]:
    resource = resource_for_object(obj)
    ns = (obj.get("metadata", {}).get("namespace") or namespace) if resource.namespaced else None
    if resource.namespaced and not ns:
        raise KubeError(f"{obj['kind']}/{object_name(obj)} has no namespace and none was given", param="namespace")
    return resource, ns, object_name(obj)


def apply(objects: Iterable[JSON], *, api_client: Any, namespace: str | None = None) -> list[JSON]:
    """Create each object, or merge-patch it when it exists. Returns the live objects, in order."""
    from kubernetes.client.rest import ApiException

    applied = []
    for obj in objects:
        resource, ns, name = _target(obj, namespace)
        what = f"{resource.kind} {ns + '/' if ns else ''}{name}"
        body = {**obj, "metadata": {**obj.get("metadata", {}), **({"namespace": ns} if ns else {})}}
        try:
            live = _call(api_client, "POST", resource.collection_path(ns), body)
            log.info("created %s", what)
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error(exc, f"cannot create {what}") from None
            try:
                live = _call(api_client, "PATCH", resource.object_path(ns, name), body, content_type=MERGE_PATCH)
            except ApiException as patch_exc:
                raise _api_error(patch_exc, f"cannot patch {what}") from None
            log.info("patched %s", what)
        applied.append(live)
    return applied


def get_object(kind: str, name: str, *, api_client: Any, namespace: str | None = None,
               api_version: str | None = None) -> JSON | None:
    """The live object, or None when it does not exist."""
    from kubernetes.client.rest import ApiException

    resource = resource_for_kind(kind, api_version)
    try:
        return _call(api_client, "GET", resource.object_path(namespace if resource.namespaced else None, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _api_error(exc, f"cannot read {kind} {name}") from None


def delete(objects: Iterable[JSON], *, api_client: Any, namespace: str | None = None) -> list[str]:
    """Delete each object (in reverse order: dependents first); missing ones are skipped. Returns what was deleted
    as ``Kind/name``."""
    from kubernetes.client.rest import ApiException

    deleted = []
    for obj in reversed(list(objects)):
        resource, ns, name = _target(obj, namespace)
        try:
            _call(api_client, "DELETE", resource.object_path(ns, name))
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise _api_error(exc, f"cannot delete {resource.kind} {name}") from None
        deleted.append(f"{resource.kind}/{name}")
    return deleted


def readiness(obj: JSON | None) -> tuple[bool, str, bool]:
    """``(ready, what is missing, terminal)`` from an object's ``status.conditions`` (Knative style). What is missing
    is the first False condition, else the first one not yet True, else ``Ready`` itself."""
    if obj is None:
        return False, "the object does not exist", False
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    ready = conditions.get("Ready")
    if ready is not None and ready.get("status") == "True":
        return True, "", False
    model_status = status.get("modelStatus") or {}
    terminal = model_status.get("transitionStatus") in _TERMINAL_TRANSITIONS
    others = [c for t, c in conditions.items() if t != "Ready"]
    first = next((c for c in others if c.get("status") == "False"), None) or next(
        (c for c in others if c.get("status") != "True"), None)
    if first is not None:
        return False, _describe(first), terminal
    if ready is None:
        return False, "condition Ready is missing", terminal
    return False, _describe(ready), terminal


def _describe(condition: JSON) -> str:
    text = f"condition {condition.get('type')} is {condition.get('status')}"
    details = [f"{key}={condition[key]!r}" for key in ("reason", "message") if condition.get(key)]
    return f"{text} ({', '.join(details)})" if details else text


def wait_ready(kind: str, name: str, namespace: str | None, timeout: float, *, api_client: Any,
               clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep, poll: float = 1.0,
               api_version: str | None = None) -> JSON:
    """Poll until the object's ``Ready`` condition is True; return it. Raises ``NotReadyError`` naming the missing or
    false condition (with reason and message) after ``timeout`` seconds, or at once on a terminal model failure."""
    deadline = clock() + timeout
    while True:
        obj = get_object(kind, name, api_client=api_client, namespace=namespace, api_version=api_version)
        ready, missing, terminal = readiness(obj)
        if ready:
            assert obj is not None
            return obj
        if terminal:
            raise NotReadyError(f"{kind} {namespace}/{name} failed: {missing}", param=missing.split(" ")[1])
        if clock() >= deadline:
            raise NotReadyError(f"{kind} {namespace}/{name} not ready after {timeout:g}s: {missing}",
                                param=missing.split(" ")[1] if missing.startswith("condition") else None)
        sleep(poll)
