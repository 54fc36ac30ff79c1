"""``teardown``: delete a deployment from its state JSON (stops exactly the processes ``deploy`` started)."""

from kfp import dsl

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def teardown(state: str) -> None:
    from kserve_llmd.rollout import steps

    steps.teardown(state)
