"""``deploy``: render and apply a deployment (local processes or an LLMInferenceService), wait until Ready."""

from typing import NamedTuple

from kfp import dsl

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy(
    name: str,
    target: str,
    model: str,
    profile: str,
    sim_args: str,
    engines: int,
    router_preset: str,
    time_scale: float,
    ready_timeout_s: float,
    namespace: str,
    workdir: str,
    seed: int,
    model_uri: str = "",
    backend: str = "sim",
    format: str = "isvc",
) -> NamedTuple("Deployed", [("endpoint", str), ("state", str)]):  # type: ignore[valid-type]
    """Outputs the endpoint URL and the deployment state JSON (pids + URLs locally) for later steps. ``model_uri``,
    ``backend`` (sim | vllm) and ``format`` (isvc | llmisvc) matter on a cluster only."""
    from kserve_llmd.rollout import steps

    return steps.deploy(
        name=name, target=target, model=model, profile=profile, sim_args=sim_args, engines=engines,
        router_preset=router_preset, time_scale=time_scale, ready_timeout_s=ready_timeout_s, namespace=namespace,
        workdir=workdir, seed=seed, model_uri=model_uri, backend=backend, format=format,
    )  # fmt: skip
