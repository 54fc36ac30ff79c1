"""Strict checks of core kinds through the kubernetes client's models."""

from __future__ import annotations

from typing import Any

import pytest

from kserve_llmd.kube import core


def deployment(**container: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "router", "namespace": "llm"},
            "spec": {"selector": {"matchLabels": {"app": "r"}},
                     "template": {"metadata": {"labels": {"app": "r"}},
                                  "spec": {"containers": [{"name": "router", "image": "img", **container}]}}}}


def test_valid_deployment() -> None:
    assert core.issues(deployment(ports=[{"containerPort": 8000}], resources={"limits": {"cpu": 1}})) == []


@pytest.mark.parametrize(
    ("container", "path"),
    [
        ({"imagePullPolicy": "Always", "imagePulPolicy": "x"}, "spec.template.spec.containers[0].imagePulPolicy"),
        ({"ports": [{"containerPort": "8000"}]}, "spec.template.spec.containers[0].ports[0].containerPort"),
        ({"ports": [{"name": "http"}]}, "spec.template.spec.containers[0].ports[0].containerPort"),
        ({"args": "--port 1"}, "spec.template.spec.containers[0].args"),
        ({"env": [{"name": "A", "value": 1}]}, "spec.template.spec.containers[0].env[0].value"),
    ],
)
def test_bad_container_fields_are_named(container: dict[str, Any], path: str) -> None:
    assert path in [issue.path for issue in core.issues(deployment(**container))]


def test_missing_selector_and_bad_metadata() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    obj["metadata"]["name"] = "Router"
    assert [issue.path for issue in core.issues(obj)] == ["metadata.name", "spec.selector"]


def test_unknown_core_kind() -> None:
    assert core.issues({"apiVersion": "v1", "kind": "Pod"})[0].path == "kind"
