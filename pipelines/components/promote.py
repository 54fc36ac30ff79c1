"""``promote``: all traffic to the candidate, then delete the current version. Outputs the serving state."""

from kfp import dsl

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(current_state: str, candidate_state: str) -> str:
    from kserve_llmd.rollout import steps

    return steps.promote(current_state, candidate_state)
