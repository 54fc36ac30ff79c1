"""Turn a CRD's structural ``openAPIV3Schema`` into a JSON schema that validates like the API server in strict mode.

The API server (``kubectl apply --validate=strict``, server-side field validation ``Strict``) rejects a field the
schema does not declare unless the node sets ``x-kubernetes-preserve-unknown-fields``. Plain JSON schema allows
unknown fields, so :func:`strict_schema` rewrites a (copied) schema node by node:

* ``properties`` without ``additionalProperties`` and without the preserve flag → ``additionalProperties: false``;
  an ``object`` with neither (the API server prunes every field of it) → also closed;
* ``x-kubernetes-int-or-string`` → ``anyOf: [integer, string]`` (kept if the CRD spells it out);
* ``nullable: true`` → ``null`` allowed; otherwise ``null`` is rejected (the API server would drop it silently);
* ``x-kubernetes-embedded-resource`` → ``apiVersion``/``kind`` required and ``metadata`` checked as ObjectMeta;
* ``x-kubernetes-list-type: set`` → ``uniqueItems``; ``map`` keys are checked by the validator (see ``crds.py``);
* the root: ``apiVersion``/``kind`` pinned to the CRD's, ``metadata`` checked as ObjectMeta (:data:`OBJECT_META`).

``x-kubernetes-validations`` (CEL) stays in place; ``crds.py`` evaluates it with cel-python.
"""

from __future__ import annotations

import copy
from typing import Any

from kserve_llmd.types import JSON

#: DNS-1123 label (namespaces, most names inside a pod spec).
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: DNS-1123 subdomain (object names of most kinds).
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: DNS-1035 label: what KServe's admission webhook demands of InferenceService names (they become Service names).
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: A label or annotation key: optional DNS-subdomain prefix and ``/``, then a name of at most 63 characters.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
#: A label value: empty or at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

_STRING_MAP: JSON = {"type": "object", "additionalProperties": {"type": "string"}}

#: ObjectMeta as far as a manifest author writes it, plus the read-only fields a fetched object carries.
OBJECT_META: JSON = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "generateName": {"type": "string", "maxLength": 253},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": LABEL_KEY, "maxLength": 317},
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        },
        "annotations": {**_STRING_MAP, "propertyNames": {"pattern": LABEL_KEY, "maxLength": 317}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": "string"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
}

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")
_SCHEMA_ONE = ("not", "additionalProperties", "items")


def strip_descriptions(node: Any) -> Any:
    """A copy of a schema without ``description`` keywords (schema-aware: a property named ``description`` stays)."""
    if not isinstance(node, dict):
        return node
    out: JSON = {}
    for key, value in node.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strip_descriptions(sub) for sub in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = strip_descriptions(value)
        else:
            out[key] = value
    return out


def strict_schema(schema: JSON, *, api_version: str, kind: str, name_pattern: str = DNS1123_SUBDOMAIN) -> JSON:
    """The strict JSON schema for one CRD version (see the module docstring). ``schema`` is not modified."""
    root = _strict(copy.deepcopy(schema))
    props = root.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    meta = copy.deepcopy(OBJECT_META)
    meta["properties"]["name"]["pattern"] = name_pattern
    meta["required"] = ["name"]
    props["metadata"] = meta
    root["required"] = sorted({*root.get("required", []), "apiVersion", "kind", "metadata"})
    return root


def _strict(node: JSON) -> JSON:
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {name: _strict(sub) for name, sub in node[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [_strict(sub) for sub in node[key]]
    for key in _SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            node[key] = _strict(node[key])
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-embedded-resource"):
        props = node.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = copy.deepcopy(OBJECT_META)
        node["required"] = sorted({*node.get("required", []), "apiVersion", "kind"})
    closed_object = node.get("type") == "object" and "properties" not in node
    if not preserve and "additionalProperties" not in node and ("properties" in node or closed_object):
        node["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        node["uniqueItems"] = True
    if node.get("nullable") is True:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if isinstance(node.get("enum"), list):
            node["enum"] = [*node["enum"], None]
    return node
