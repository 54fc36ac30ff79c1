"""The Kubernetes resource kinds kserve-llmd reads and writes, and their REST paths (one table, used by the
operations in ``ops.py`` and by the API double in ``kserve_llmd/testing``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kserve_llmd.errors import KubeError


@dataclass(frozen=True, slots=True)
class Resource:
    """One REST resource: ``/api/v1/...`` for the core group, ``/apis/{group}/{version}/...`` otherwise."""

    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True
    #: Custom resources validated against a CRD schema (and given a status by the controller).
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def with_version(self, version: str) -> Resource:
        return Resource(self.kind, self.group, version, self.plural, self.namespaced, self.custom)

    def collection_path(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if not self.namespaced:
            return f"{prefix}/{self.plural}"
        if not namespace:
            raise KubeError(f"{self.kind} is namespaced: a namespace is required")
        return f"{prefix}/namespaces/{namespace}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


_SERVING = "serving.kserve.io"
RESOURCES: tuple[Resource, ...] = (
    Resource("InferenceService", _SERVING, "v1beta1", "inferenceservices", custom=True),
    Resource("ServingRuntime", _SERVING, "v1alpha1", "servingruntimes", custom=True),
    Resource("ClusterServingRuntime", _SERVING, "v1alpha1", "clusterservingruntimes", namespaced=False, custom=True),
    Resource("LLMInferenceService", _SERVING, "v1alpha2", "llminferenceservices", custom=True),
    Resource("InferencePool", "inference.networking.k8s.io", "v1", "inferencepools", custom=True),
    Resource("Pod", "", "v1", "pods"),
    Resource("Service", "", "v1", "services"),
    Resource("ServiceAccount", "", "v1", "serviceaccounts"),
    Resource("ConfigMap", "", "v1", "configmaps"),
    Resource("Deployment", "apps", "v1", "deployments"),
    Resource("Role", "rbac.authorization.k8s.io", "v1", "roles"),
    Resource("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings"),
)
#: Versions accepted besides the preferred one (LLMInferenceService is served at both).
EXTRA_VERSIONS: dict[str, tuple[str, ...]] = {"LLMInferenceService": ("v1alpha1",)}

_BY_KIND = {r.kind: r for r in RESOURCES}


def resource_for_kind(kind: str, api_version: str | None = None) -> Resource:
    """The resource of ``kind``; ``api_version`` (``group/version``) picks a non-default served version."""
    try:
        resource = _BY_KIND[kind]
    except KeyError:
        known = ", ".join(sorted(_BY_KIND))
        raise KubeError(f"unsupported kind {kind!r}; supported kinds: {known}", param="kind") from None
    if api_version is None or api_version == resource.api_version:
        return resource
    group, _, version = api_version.rpartition("/")
    if group != resource.group or version not in EXTRA_VERSIONS.get(kind, ()):
        raise KubeError(f"{kind} is not served at apiVersion {api_version!r}", param="apiVersion")
    return resource.with_version(version)


def resource_for_object(obj: dict[str, Any]) -> Resource:
    """The resource of a manifest, from its ``kind`` and ``apiVersion``."""
    kind = obj.get("kind")
    if not isinstance(kind, str):
        raise KubeError("object has no kind", param="kind")
    api_version = obj.get("apiVersion")
    return resource_for_kind(kind, api_version if isinstance(api_version, str) else None)


def object_name(obj: dict[str, Any]) -> str:
    name = obj.get("metadata", {}).get("name")
    if not isinstance(name, str) or not name:
        raise KubeError(f"{obj.get('kind', 'object')} has no metadata.name", param="metadata.name")
    return name


def resource_for_path(group: str, version: str, plural: str) -> Resource | None:
    """Reverse lookup for the API double: the resource served at ``group/version/plural``."""
    for resource in RESOURCES:
        if resource.group == group and resource.plural == plural:
            if version == resource.version:
                return resource
            if version in EXTRA_VERSIONS.get(resource.kind, ()):
                return resource.with_version(version)
    return None
