"""``rollback``: all traffic back to the current version, delete the candidate. Outputs the serving state."""

from kfp import dsl

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def rollback(current_state: str, candidate_state: str) -> str:
    from kserve_llmd.rollout import steps

    return steps.rollback(current_state, candidate_state)
