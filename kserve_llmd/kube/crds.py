"""Validate manifests against the real CRD schemas, strictly, as the Kubernetes API server would.

Sources of schemas, in order: an explicit CRD directory (``SchemaRegistry.from_crd_dir``) or the compact copy
vendored in ``kube/schemas/`` (``SchemaRegistry.vendored()``, the default). The vendored copy is each served
version's ``openAPIV3Schema`` without descriptions, gzipped (about 80 KB for all five CRDs, against 5 MB of YAML),
so ``kserve-llmd render`` validates with no checkout of the CRDs around. ``tests/kube/test_crds_vendored.py`` fails
when it drifts from ``../shared/crds``; regenerate with ``python -m kserve_llmd.kube.crds --vendor DIR``.

What is checked (see ``_strict.py`` for the schema rewrite): types, enums, patterns, bounds, required fields,
unknown fields (strict mode), int-or-string, list-type ``set``/``map`` uniqueness, ObjectMeta (DNS names, label
syntax), the kind's admission name rule (KServe wants DNS-1035 names), and the CEL rules (``cel.py``). Core kinds
(Deployment, Service, RBAC, ...) go through ``core.py``. Not checked: admission webhooks beyond the name rule,
``messageExpression``, formats other than int32/int64 ranges, defaults.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kserve_llmd.errors import ManifestValidationError
from kserve_llmd.kube import cel
from kserve_llmd.kube._strict import DNS1035_LABEL, DNS1123_SUBDOMAIN, strict_schema, strip_descriptions
from kserve_llmd.types import JSON

VENDORED_DIR = Path(__file__).resolve().parent / "schemas"
#: Where the shared CRDs live beside a checkout (``<root>/../shared/crds``).
DEFAULT_CRDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "crds"
#: Kinds whose names KServe's webhook restricts to DNS-1035 labels.
_DNS1035_KINDS = frozenset({"InferenceService", "LLMInferenceService", "LLMInferenceServiceConfig"})
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation problem: ``path`` is dotted (``spec.containers[0].args``), ``message`` says what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class CrdVersion:
    """One served version of a CRD: its identity and its raw (description-less) ``openAPIV3Schema``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    schema: JSON

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def crd_versions(crd: Mapping[str, Any]) -> Iterator[CrdVersion]:
    """Every served version of a CustomResourceDefinition document."""
    spec = crd["spec"]
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        yield CrdVersion(
            group=spec["group"],
            version=version["name"],
            kind=spec["names"]["kind"],
            plural=spec["names"]["plural"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            schema=strip_descriptions(version["schema"]["openAPIV3Schema"]),
        )


def format_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_list_map(validator: Any, keys: Any, instance: Any, schema: JSON) -> Iterator[jsonschema.ValidationError]:
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen: set[str] = set()
    for item in instance:
        if isinstance(item, dict):
            key = json.dumps([item.get(k) for k in keys])
            if key in seen:
                duplicate = dict(zip(keys, json.loads(key), strict=True))
                yield jsonschema.ValidationError(f"duplicate entry for key {duplicate}")
            seen.add(key)


def _with_defaults(instance: Any, schema: JSON) -> Any:
    """``instance`` with the schema's ``default``s filled in (the API server defaults before it runs CEL)."""
    if not isinstance(instance, dict):
        return instance
    out = dict(instance)
    for name, sub in schema.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if isinstance(out.get(name), dict):
            out[name] = _with_defaults(out[name], sub)
    return out


def _check_cel(validator: Any, rules: Any, instance: Any, schema: JSON) -> Iterator[jsonschema.ValidationError]:
    for failure in cel.check(rules, _with_defaults(instance, schema)):
        path = failure.field_path.lstrip(".").split(".") if failure.field_path else []
        yield jsonschema.ValidationError(failure.message, path=path)


def _int_format(bounds: tuple[int, int]) -> Any:
    def check(value: object) -> bool:
        return not isinstance(value, int) or bounds[0] <= value <= bounds[1]

    return check


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("int32")(_int_format(_INT32))
_FORMATS.checks("int64")(_int_format(_INT64))
_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    {"x-kubernetes-list-map-keys": _check_list_map, "x-kubernetes-validations": _check_cel},
)


class SchemaRegistry:
    """Strict validators for a set of CRD versions, compiled once per (apiVersion, kind) on first use."""

    def __init__(self, versions: Iterable[CrdVersion]) -> None:
        self._versions = {(v.api_version, v.kind): v for v in versions}
        self._validators: dict[tuple[str, str], Any] = {}

    @classmethod
    def from_crd_dir(cls, crds_dir: Path) -> SchemaRegistry:
        """Read every ``*.yaml`` CustomResourceDefinition in ``crds_dir``."""
        if not crds_dir.is_dir():
            raise ManifestValidationError(f"CRD directory not found: {crds_dir}")
        return cls(v for path in sorted(crds_dir.glob("*.yaml")) for v in crd_versions(load_yaml(path)))

    @classmethod
    def vendored(cls) -> SchemaRegistry:
        """The compact copy shipped in the package (see the module docstring)."""
        return cls(_vendored_versions())

    def kinds(self) -> list[tuple[str, str]]:
        """The (apiVersion, kind) pairs this registry validates."""
        return sorted(self._versions)

    def crd(self, api_version: str, kind: str) -> CrdVersion | None:
        return self._versions.get((api_version, kind))

    def issues(self, obj: Mapping[str, Any]) -> list[Issue]:
        """Every problem with ``obj`` (empty when valid). Unknown kinds are an issue, not a pass."""
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        version = self._versions.get(key)
        if version is None:
            return [Issue("apiVersion", f"no schema for apiVersion={key[0]} kind={key[1]}")]
        validator = self._validators.get(key)
        if validator is None:
            pattern = DNS1035_LABEL if version.kind in _DNS1035_KINDS else DNS1123_SUBDOMAIN
            schema = strict_schema(version.schema, api_version=version.api_version, kind=version.kind,
                                   name_pattern=pattern)
            validator = self._validators[key] = _Validator(schema, format_checker=_FORMATS)
        found = [_issue(error) for error in validator.iter_errors(dict(obj))]
        if version.namespaced is False and "namespace" in (obj.get("metadata") or {}):
            found.append(Issue("metadata.namespace", f"{version.kind} is cluster-scoped and takes no namespace"))
        return sorted(found, key=lambda issue: issue.path)

    def validate(self, obj: Mapping[str, Any]) -> None:
        """Raise :class:`ManifestValidationError` naming the kind/name and each bad field path."""
        raise_for_issues(obj, self.issues(obj))


def raise_for_issues(obj: Mapping[str, Any], issues: list[Issue]) -> None:
    if not issues:
        return
    name = (obj.get("metadata") or {}).get("name", "<unnamed>")
    shown = "; ".join(str(issue) for issue in issues[:8])
    more = f" (and {len(issues) - 8} more)" if len(issues) > 8 else ""
    raise ManifestValidationError(f"{obj.get('kind')}/{name}: {shown}{more}", param=issues[0].path)


def _issue(error: jsonschema.ValidationError) -> Issue:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        return Issue(format_path([*path, extra[0]]) if len(extra) == 1 else format_path(path),
                     f"unknown field{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}")
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]
        if missing:
            return Issue(format_path([*path, missing[0]]), "required field missing")
    if error.validator == "anyOf" and schema.get("x-kubernetes-int-or-string"):
        return Issue(format_path(path), f"{error.instance!r} is neither an integer nor a string")
    return Issue(format_path(path), error.message)


def _vendored_versions() -> Iterator[CrdVersion]:
    index = json.loads((VENDORED_DIR / "index.json").read_text())
    for entry in index["crds"]:
        data = json.loads(gzip.decompress((VENDORED_DIR / entry["file"]).read_bytes()))
        for version, schema in data["versions"].items():
            yield CrdVersion(data["group"], version, data["kind"], data["plural"], data["namespaced"], schema)


@functools.cache
def default_registry() -> SchemaRegistry:
    """The process-wide registry over the vendored schemas (built once; validators compile lazily)."""
    return SchemaRegistry.vendored()


@functools.cache
def registry_for(crds_dir: Path) -> SchemaRegistry:
    """A registry over the CRDs in ``crds_dir``, built once per directory per process."""
    return SchemaRegistry.from_crd_dir(crds_dir)


def validate(obj: Mapping[str, Any], registry: SchemaRegistry | None = None) -> None:
    """Validate one object: CRD kinds against their schema, core kinds via ``core.py``. Raises on any problem."""
    from kserve_llmd.kube import core  # the kubernetes client import is slow; only core kinds pay for it

    if core.is_core(obj):
        raise_for_issues(obj, core.issues(obj))
    else:
        (registry or default_registry()).validate(obj)


def validate_all(objects: Iterable[Mapping[str, Any]], registry: SchemaRegistry | None = None) -> None:
    """Validate every object; the first failure raises (its message names the kind, name and field)."""
    for obj in objects:
        validate(obj, registry)


def load_yaml(path: Path) -> Any:
    """One YAML document, with the C loader when available (a 2.7 MB CRD: 0.7 s instead of 10 s)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)


def vendor(crds_dir: Path, out_dir: Path = VENDORED_DIR) -> list[Path]:
    """Write the compact schema copy of every CRD in ``crds_dir`` into ``out_dir`` (deterministic bytes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, entries = [], []
    for path in sorted(crds_dir.glob("*.yaml")):
        raw = path.read_bytes()
        versions = list(crd_versions(load_yaml(path)))
        first = versions[0]
        data = {"group": first.group, "kind": first.kind, "plural": first.plural, "namespaced": first.namespaced,
                "versions": {v.version: v.schema for v in versions}}
        name = f"{first.plural}.{first.group}.json.gz"
        payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        (out_dir / name).write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
        entries.append({"file": name, "source": path.name, "sha256": hashlib.sha256(raw).hexdigest(),
                        "apiVersions": [v.api_version for v in versions], "kind": first.kind})
        written.append(out_dir / name)
    (out_dir / "index.json").write_text(json.dumps({"crds": entries}, indent=2, sort_keys=True) + "\n")
    return [*written, out_dir / "index.json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kserve_llmd.kube.crds", description=vendor.__doc__)
    parser.add_argument("--vendor", type=Path, default=DEFAULT_CRDS_DIR, metavar="CRDS_DIR",
                        help=f"the CRD directory to copy from (default {DEFAULT_CRDS_DIR})")
    args = parser.parse_args(argv)
    if not args.vendor.is_dir():
        print(f"CRD directory not found: {args.vendor}", file=sys.stderr)
        return 2
    for path in vendor(args.vendor):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
