"""``canary``: deploy the candidate beside the current version with a traffic weight, benchmark both under the same
load, and decide ``promote`` or ``rollback`` against the SLOs and the allowed regression (evidence as JSON)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def canary(
    current_state: str,
    name: str,
    profile: str,
    sim_args: str,
    engines: int,
    router_preset: str,
    time_scale: float,
    ready_timeout_s: float,
    namespace: str,
    workdir: str,
    scenario: str,
    slos: str,
    max_regression: str,
    canary_weight: float,
    seed: int,
    evidence: Output[Artifact],
    report: Output[Markdown],
    model_uri: str = "",
    backend: str = "sim",
    format: str = "isvc",
) -> NamedTuple("CanaryResult", [("decision", str), ("candidate_state", str)]):  # type: ignore[valid-type]
    from kserve_llmd.rollout import steps

    return steps.run_canary(
        current_state, scenario=scenario, slos=slos, max_regression=max_regression, canary_weight=canary_weight,
        seed=seed, evidence_path=evidence.path, report_path=report.path, name=name, profile=profile,
        sim_args=sim_args, engines=engines, router_preset=router_preset, time_scale=time_scale,
        ready_timeout_s=ready_timeout_s, namespace=namespace, workdir=workdir, model_uri=model_uri, backend=backend,
        format=format,
    )  # fmt: skip
