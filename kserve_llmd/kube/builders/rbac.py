"""RBAC for the router's Kubernetes discovery: a ServiceAccount, a Role that may only get/list/watch pods in its own
namespace, and the RoleBinding between them (no ClusterRole: discovery never leaves the namespace)."""

from __future__ import annotations

from kserve_llmd.kube.builders.core import PART_OF, PART_OF_LABEL, DnsName, ObjectMeta, manifest
from kserve_llmd.types import JSON

RBAC_API = "rbac.authorization.k8s.io/v1"
POD_READER_VERBS = ("get", "list", "watch")


def discovery_rbac(service_account: DnsName, namespace: str | None) -> list[JSON]:
    """``[ServiceAccount, Role, RoleBinding]`` named after ``service_account``."""
    labels = {PART_OF_LABEL: PART_OF}
    meta = ObjectMeta(name=service_account, namespace=namespace, labels=labels)
    role_name = f"{service_account}-pod-reader"
    role_meta = ObjectMeta(name=role_name, namespace=namespace, labels=labels)
    subject: JSON = {"kind": "ServiceAccount", "name": service_account}
    if namespace:
        subject["namespace"] = namespace
    return [
        manifest("v1", "ServiceAccount", meta),
        manifest(RBAC_API, "Role", role_meta,
                 rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": list(POD_READER_VERBS)}]),
        manifest(RBAC_API, "RoleBinding", role_meta,
                 roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                 subjects=[subject]),
    ]
