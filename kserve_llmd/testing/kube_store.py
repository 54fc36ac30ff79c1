"""The state behind ``KubeApiDouble``: objects, resource versions, the watch event log, label selectors.

Thread-safe: the HTTP server handles each request on its own thread, so every method takes ``lock``; watchers wait
on ``changed`` (a ``Condition`` on the same lock). Resource versions are one global counter, like etcd's revision.
The event log keeps the last ``window`` events; a watch from an older resource version gets 410 Gone ("Expired").
"""

from __future__ import annotations

import copy
import threading
import uuid
from dataclasses import dataclass
from typing import Any

JSONObj = dict[str, Any]
Key = tuple[str, str, str, str]  # (group, plural, namespace, name); namespace "" when cluster-scoped


class ApiError(Exception):
    """An API failure answered as a ``Status`` body (``reason`` as the API server spells it)."""

    def __init__(self, code: int, reason: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.field = code, reason, message, field

    def status(self) -> JSONObj:
        body: JSONObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.field is not None:
            cause = {"reason": "FieldValueInvalid", "message": self.message, "field": self.field}
            body["details"] = {"causes": [cause]}
        return body


@dataclass(slots=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    group: str
    plural: str
    namespace: str
    obj: JSONObj
    old: JSONObj | None  # the previous version, for selector transitions


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes a key; lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_selector(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Label selector terms ``(key, op, values)``: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (..)``,
    ``k``, ``!k``."""
    terms: list[tuple[str, str, tuple[str, ...]]] = []
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        for op in (" notin ", " in "):
            if op in raw:
                key, _, values = raw.partition(op)
                items = tuple(v.strip() for v in values.strip().strip("()").split(",") if v.strip())
                terms.append((key.strip(), op.strip(), items))
                break
        else:
            if "!=" in raw:
                key, _, value = raw.partition("!=")
                terms.append((key.strip(), "!=", (value.strip(),)))
            elif "=" in raw:
                key, _, value = raw.replace("==", "=").partition("=")
                terms.append((key.strip(), "=", (value.strip(),)))
            elif raw.startswith("!"):
                terms.append((raw[1:].strip(), "!", ()))
            else:
                terms.append((raw, "exists", ()))
    return terms


def selector_matches(terms: list[tuple[str, str, tuple[str, ...]]], obj: JSONObj | None) -> bool:
    if obj is None:
        return False
    labels: dict[str, str] = obj.get("metadata", {}).get("labels") or {}
    for key, op, values in terms:
        present = key in labels
        ok = {
            "=": present and labels.get(key) == values[0],
            "!=": labels.get(key) != values[0] if values else True,
            "in": present and labels.get(key) in values,
            "notin": labels.get(key) not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


class Store:
    """Objects by key, one resource-version counter, and a bounded event log for watches."""

    def __init__(self, window: int = 1000) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[Key, JSONObj] = {}
        self.rv = 0
        self.window = window
        self.events: list[Event] = []
        #: Resource version below which watches are Expired (everything ≤ floor is forgotten).
        self.floor = 0
        #: Bumped by ``drop_watches``: open watches whose generation is older end.
        self.watch_generation = 0
        self.drop_abruptly = False
        #: Watch streams open now (``KubeApiDouble.wait_for_watches`` waits on it).
        self.open_watches = 0
        self.closed = False

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def get(self, key: Key) -> JSONObj | None:
        with self.lock:
            obj = self.objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def put(self, key: Key, obj: JSONObj, *, created: bool) -> JSONObj:
        """Store ``obj`` under a new resource version and record the event (ADDED or MODIFIED)."""
        with self.lock:
            old = self.objects.get(key)
            meta = obj.setdefault("metadata", {})
            if created:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
            meta["resourceVersion"] = str(self.next_rv())
            self.objects[key] = obj
            self._record("ADDED" if created else "MODIFIED", key, obj, old)
            return copy.deepcopy(obj)

    def remove(self, key: Key) -> JSONObj | None:
        with self.lock:
            obj = self.objects.pop(key, None)
            if obj is None:
                return None
            obj["metadata"]["resourceVersion"] = str(self.next_rv())
            self._record("DELETED", key, obj, obj)
            return copy.deepcopy(obj)

    def _record(self, type_: str, key: Key, obj: JSONObj, old: JSONObj | None) -> None:
        group, plural, namespace, _ = key
        self.events.append(Event(self.rv, type_, group, plural, namespace, copy.deepcopy(obj), copy.deepcopy(old)))
        if len(self.events) > self.window:
            dropped = self.events[: len(self.events) - self.window]
            self.events = self.events[len(dropped) :]
            self.floor = dropped[-1].rv
        self.changed.notify_all()

    def compact(self) -> None:
        """Forget every event so far: watches from any earlier resource version get 410 Gone."""
        with self.lock:
            self.events.clear()
            self.floor = self.rv
            self.changed.notify_all()

    def list(self, group: str, plural: str, namespace: str | None, selector: str) -> tuple[list[JSONObj], int]:
        terms = parse_selector(selector)
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (g, p, ns, _), obj in sorted(self.objects.items())
                if (g, p) == (group, plural) and namespace in (None, ns) and selector_matches(terms, obj)
            ]
            return items, self.rv
