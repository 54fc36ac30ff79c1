"""``LLMDeployment``: a P/D model on KServe, from a notebook or a Kubeflow Pipelines component.

    dep = LLMDeployment("Qwen/Qwen3-0.6B", "hf://Qwen/Qwen3-0.6B", namespace="llm",
                        prefill=PoolSpec(replicas=1), decode=PoolSpec(replicas=2))
    dep.render()        # validated manifests (kube/builders + kube/crds), no cluster needed
    dep.apply()         # create or merge-patch (kube/ops.apply)
    dep.wait_ready(600) # → endpoint URL; NotReadyError names the condition that is missing
    dep.delete()

``format="isvc"`` renders ServingRuntimes, ``<name>-prefill`` and ``<name>`` InferenceServices (our router as the
transformer) and the router's RBAC; ``format="llmisvc"`` one LLMInferenceService (KServe's llm-d scheduler). The
endpoint is the ``status.url`` of ``<name>``. Synchronous on purpose: the ``kubernetes`` client is, and so are
notebook cells and KFP components. The API client is built on first use (``kube``, default ``KubeConfig.detect``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

from kserve_llmd.errors import NotReadyError
from kserve_llmd.kube import ops
from kserve_llmd.sdk.specs import PoolSpec, RouterSpec, default_name
from kserve_llmd.types import JSON, Clock


class LLMDeployment:
    """See the module docstring. Constructing validates the spec (``ConfigError`` names the field); no I/O."""

    def __init__(
        self,
        model: str,
        model_uri: str,
        *,
        name: str | None = None,
        namespace: str = "default",
        prefill: PoolSpec | None = None,
        decode: PoolSpec | None = None,
        router: RouterSpec | None = None,
        format: Literal["isvc", "llmisvc"] = "isvc",
        backend: Literal["vllm", "sim"] = "vllm",
        image: str | None = None,
        kube: ops.KubeConfig | None = None,
        api_client: Any = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 2.0,
    ) -> None:
        from kserve_llmd.kube.builders import PoolOptions, parse_spec

        prefill = prefill if prefill is not None else PoolSpec(replicas=1)
        decode = decode if decode is not None else PoolSpec(replicas=1)
        router = router if router is not None else RouterSpec()

        def pool(p: PoolSpec) -> PoolOptions:
            return PoolOptions(replicas=p.replicas, gpus=p.gpus, cpu=p.cpu, memory=p.memory, env=p.env,
                               extra_args=p.extra_args)

        self.spec = parse_spec({
            "name": name or default_name(model), "model": model, "model_uri": model_uri, "namespace": namespace,
            "format": format, "backend": backend, "prefill": pool(prefill), "decode": pool(decode),
            "image": image, "router_preset": router.preset, "non_cached_tokens": router.non_cached_tokens,
            "scheduler_config_ref": router.scheduler_config_ref, "router_settings": router.settings,
        })
        self._state: JSON = {
            "model": model, "model_uri": model_uri, "name": self.spec.name, "namespace": namespace,
            "prefill": prefill.model_dump(mode="json"), "decode": decode.model_dump(mode="json"),
            "router": router.model_dump(mode="json"), "format": format, "backend": backend, "image": image,
        }  # fmt: skip
        self._kube = kube
        self._api_client = api_client
        self._owns_client = api_client is None
        self._clock, self._sleep, self._poll = clock, sleep, poll
        self._endpoint: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def namespace(self) -> str:
        return self.spec.namespace or "default"

    @property
    def kind(self) -> str:
        """The kind whose ``status.url`` is the endpoint."""
        return "InferenceService" if self.spec.format == "isvc" else "LLMInferenceService"

    def client(self) -> Any:
        """The ``kubernetes`` ApiClient (built on first use from ``kube``)."""
        if self._api_client is None:
            kube = self._kube if self._kube is not None else ops.KubeConfig.detect(os.environ)
            self._api_client = kube.api_client()
        return self._api_client

    # ------------------------------------------------------------------------------------------- Deployment
    def render(self) -> list[JSON]:
        """The manifests, validated against the CRD schemas (``ManifestValidationError`` names the field)."""
        from kserve_llmd.kube import crds
        from kserve_llmd.kube.render import render_objects

        objects = render_objects(self.spec)
        crds.validate_all(objects)
        return objects

    def apply(self) -> None:
        ops.apply(self.render(), api_client=self.client(), namespace=self.namespace)

    def wait_ready(self, timeout: float = 600.0) -> str:
        """Wait for every service to be Ready (one shared deadline); return the endpoint URL."""
        deadline = self._clock() + timeout
        names = [self.name]
        if self.spec.format == "isvc" and self.spec.disaggregated:
            names.insert(0, f"{self.name}-prefill")
        obj: JSON = {}
        for name in names:
            remaining = max(0.0, deadline - self._clock())
            obj = ops.wait_ready(self.kind, name, self.namespace, remaining, api_client=self.client(),
                                 clock=self._clock, sleep=self._sleep, poll=self._poll)
        self._endpoint = _url(obj)
        return self._endpoint

    @property
    def endpoint(self) -> str:
        """The base URL of the OpenAI API (``status.url``); read from the cluster when not yet known."""
        if self._endpoint is None:
            obj = ops.get_object(self.kind, self.name, api_client=self.client(), namespace=self.namespace)
            self._endpoint = _url(obj)
        return self._endpoint

    def delete(self) -> None:
        """Delete the services and the router's RBAC. ServingRuntimes stay: other deployments in the namespace
        share them (``llmd-<backend>-<role>``)."""
        owned = [o for o in self.render() if o["kind"] not in ("ServingRuntime", "ClusterServingRuntime")]
        ops.delete(owned, api_client=self.client(), namespace=self.namespace)
        self._endpoint = None

    def state(self) -> JSON:
        """JSON-serialisable: the spec, so that ``from_state(state).delete()`` works in another process (a later
        pipeline step). No credentials: the other process brings its own ``kube``."""
        return dict(self._state)

    @classmethod
    def from_state(cls, state: JSON, *, kube: ops.KubeConfig | None = None, api_client: Any = None,
                   **options: Any) -> LLMDeployment:
        """The deployment ``state()`` describes (constructing does no I/O)."""
        s = dict(state)
        return cls(s.pop("model"), s.pop("model_uri"), prefill=PoolSpec.model_validate(s.pop("prefill")),
                   decode=PoolSpec.model_validate(s.pop("decode")), router=RouterSpec.model_validate(s.pop("router")),
                   kube=kube, api_client=api_client, **s, **options)

    def close(self) -> None:
        """Release the API client this object built (not one passed in)."""
        if self._owns_client and self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    def __enter__(self) -> LLMDeployment:
        self.apply()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.delete()
        finally:
            self.close()


def _url(obj: JSON | None) -> str:
    url = ((obj or {}).get("status") or {}).get("url")
    if not isinstance(url, str) or not url:
        raise NotReadyError("the service reports no status.url yet", param="status.url")
    return url.rstrip("/")
