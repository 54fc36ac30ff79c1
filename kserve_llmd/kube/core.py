"""Strict checks for the core Kubernetes kinds we render (Deployment, Service, RBAC, ...), without an API server.

The kubernetes Python client's generated models carry each field's JSON name (``attribute_map``) and type
(``openapi_types``). :func:`issues` walks a manifest along them: unknown fields, wrong primitive types and missing
required fields (the models' setters reject ``None`` for those) are reported with a dotted path. Values inside
fields typed ``object`` (int-or-string ports, for example) are not inspected; quantities may be numbers.
ObjectMeta names, namespaces and labels get the same checks as CRD objects (``_strict.OBJECT_META``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from kserve_llmd.kube._strict import OBJECT_META
from kserve_llmd.kube.crds import Issue, format_path

#: (apiVersion, kind) → kubernetes client model class name.
CORE_KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}
_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                            "datetime": (str,), "date": (str,)}
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(str, (.+)\)$")
_QUANTITY_MAPS = frozenset({"limits", "requests", "hard", "capacity", "allocatable"})


def is_core(obj: Mapping[str, Any]) -> bool:
    return (str(obj.get("apiVersion")), str(obj.get("kind"))) in CORE_KINDS


@functools.cache
def _models() -> Any:
    import kubernetes.client.models as models  # about half a second: only when a core kind is validated

    return models


@functools.cache
def _meta_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({**OBJECT_META, "required": ["name"]})


def issues(obj: Mapping[str, Any]) -> list[Issue]:
    """Every problem with a core-kind manifest (empty when valid)."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key not in CORE_KINDS:
        return [Issue("kind", f"not a known core kind: apiVersion={key[0]} kind={key[1]}")]
    found = list(_walk(dict(obj), CORE_KINDS[key], []))
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        found.append(Issue("metadata", "required field missing"))
    else:
        for error in _meta_validator().iter_errors(meta):
            found.append(Issue(format_path(["metadata", *error.absolute_path]), error.message))
    return sorted(found, key=lambda issue: issue.path)


def _walk(value: Any, type_name: str, path: list[Any], parent: str = "") -> Iterator[Issue]:
    if value is None:
        yield Issue(format_path(path), "null is not allowed")
        return
    if type_name == "object":
        return
    if type_name in _PRIMITIVES:
        allowed = _PRIMITIVES[type_name]
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            yield Issue(format_path(path), f"{value!r} is not of type {type_name}")
        return
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            yield Issue(format_path(path), f"{value!r} is not a list")
            return
        for i, item in enumerate(value):
            yield from _walk(item, match.group(1), [*path, i])
        return
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            yield Issue(format_path(path), f"{value!r} is not a map")
            return
        inner = match.group(1)
        for k, item in value.items():
            if parent in _QUANTITY_MAPS and isinstance(item, int | float) and not isinstance(item, bool):
                continue
            yield from _walk(item, inner, [*path, k])
        return
    yield from _walk_model(value, type_name, path)


def _walk_model(value: Any, type_name: str, path: list[Any]) -> Iterator[Issue]:
    cls = getattr(_models(), type_name)
    if not isinstance(value, dict):
        yield Issue(format_path(path), f"expected an object ({type_name})")
        return
    if type_name == "V1ObjectMeta":  # checked with the ObjectMeta schema
        return
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    present: dict[str, Any] = {}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            yield Issue(format_path([*path, key]), "unknown field")
            continue
        present[attr] = item
        yield from _walk(item, cls.openapi_types[attr], [*path, key], parent=key)
    try:
        cls(**present)
    except ValueError as exc:  # the generated setters reject None for required fields, and bad enum values
        missing = re.search(r"`(\w+)`", str(exc))
        field = cls.attribute_map.get(missing.group(1), missing.group(1)) if missing else ""
        yield Issue(format_path([*path, field] if field else path), "required field missing or invalid")
