"""One KFP component per module. Each is a thin ``@dsl.component`` that calls ``kserve_llmd.rollout.steps``.

``BASE_IMAGE`` is the image the components run in on a cluster: kserve-llmd installed (it brings kfp, so no
``pip install`` at run time: ``install_kfp_package=False``, ``packages_to_install`` left empty). Override it per
compile with ``python -m pipelines.pipeline --compile --image IMAGE``.
"""

BASE_IMAGE = "ghcr.io/kserve-llmd/kserve-llmd:0.1.0"
