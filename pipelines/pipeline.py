"""The rollout pipeline: ``deploy → benchmark → canary → (promote | rollback)`` [→ ``teardown``].

Compile (regenerates the golden file the tests compare against)::

    python -m pipelines.pipeline --compile [--image IMAGE] [--output pipelines/compiled/llmd_rollout.yaml]

Data flow: ``deploy`` outputs the endpoint and the state JSON of the current version; ``benchmark`` measures the
endpoint (Metrics + Markdown); ``canary`` takes the current state, deploys the candidate, splits the traffic,
benchmarks both and outputs ``decision`` + the candidate's state (evidence JSON + Markdown); the ``dsl.If`` branch runs
``promote`` or ``rollback``, each outputting the state of the version left serving (``dsl.OneOf``), which is the
pipeline's output and what ``teardown`` deletes when ``teardown_at_end`` is set (local runs, tests).
"""

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from pipelines.components.benchmark import benchmark
from pipelines.components.canary import canary
from pipelines.components.deploy import deploy
from pipelines.components.promote import promote
from pipelines.components.rollback import rollback
from pipelines.components.teardown import teardown

GOLDEN = Path(__file__).resolve().parent / "compiled" / "llmd_rollout.yaml"
DEFAULT_SLOS = "ttft_p95_ms<=500,itl_p95_ms<=50,error_rate<=0.01"
DEFAULT_REGRESSION = "ttft_p95_ms:50%,itl_p95_ms:50%,error_rate:0.01"


def make_pipeline(image: str | None = None) -> Callable[..., Any]:
    """Build the pipeline; ``image`` replaces every component's base image (None: ``components.BASE_IMAGE``)."""

    def configure(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        task.set_display_name(name)
        task.set_caching_options(False)  # every step has side effects on live deployments
        if image is not None:
            task.set_container_image(image)
        return task

    @dsl.pipeline(name="llmd-rollout", description="Deploy, benchmark and canary an LLM; promote or roll back on SLOs.")
    def llmd_rollout(
        model: str = "sim-model",
        target: str = "local",
        namespace: str = "default",
        model_uri: str = "",
        engine_backend: str = "sim",
        serving_format: str = "isvc",
        workdir: str = "",
        current_name: str = "stable",
        current_profile: str = "tiny",
        current_sim_args: str = "",
        candidate_name: str = "canary",
        candidate_profile: str = "tiny",
        candidate_sim_args: str = "",
        engines: int = 1,
        router_preset: str = "round-robin",
        time_scale: float = 1.0,
        ready_timeout_s: float = 120.0,
        scenario: str = "canary-smoke",
        slos: str = DEFAULT_SLOS,
        max_regression: str = DEFAULT_REGRESSION,
        canary_weight: float = 10.0,
        seed: int = 0,
        teardown_at_end: bool = False,
    ) -> str:
        current = configure(
            deploy(
                name=current_name, target=target, model=model, profile=current_profile, sim_args=current_sim_args,
                engines=engines, router_preset=router_preset, time_scale=time_scale, ready_timeout_s=ready_timeout_s,
                namespace=namespace, workdir=workdir, seed=seed, model_uri=model_uri, backend=engine_backend,
                format=serving_format,
            ),
            "deploy current",
        )  # fmt: skip
        baseline = configure(
            benchmark(endpoint=current.outputs["endpoint"], scenario=scenario, model=model, seed=seed), "benchmark"
        )
        trial = configure(
            canary(
                current_state=current.outputs["state"], name=candidate_name, profile=candidate_profile,
                sim_args=candidate_sim_args, engines=engines, router_preset=router_preset, time_scale=time_scale,
                ready_timeout_s=ready_timeout_s, namespace=namespace, workdir=workdir, scenario=scenario, slos=slos,
                max_regression=max_regression, canary_weight=canary_weight, seed=seed, model_uri=model_uri,
                backend=engine_backend, format=serving_format,
            ).after(baseline),
            "canary",
        )  # fmt: skip
        with dsl.If(trial.outputs["decision"] == "promote", name="slos-met"):
            promoted = configure(
                promote(current_state=current.outputs["state"], candidate_state=trial.outputs["candidate_state"]),
                "promote",
            )
        with dsl.Else(name="slos-missed"):
            rolled_back = configure(
                rollback(current_state=current.outputs["state"], candidate_state=trial.outputs["candidate_state"]),
                "rollback",
            )
        serving = dsl.OneOf(promoted.output, rolled_back.output)
        with dsl.If(teardown_at_end == True, name="teardown-at-end"):  # noqa: E712  (a pipeline condition, not a bool)
            configure(teardown(state=serving), "teardown")
        return serving  # type: ignore[no-any-return]

    return llmd_rollout


llmd_rollout = make_pipeline()


def compile_pipeline(path: Path = GOLDEN, image: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(make_pipeline(image), package_path=str(path))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="compile the pipeline to YAML")
    parser.add_argument("--output", type=Path, default=GOLDEN, help=f"default: {GOLDEN}")
    parser.add_argument("--image", default=None, help="container image for every component (default: BASE_IMAGE)")
    args = parser.parse_args(argv)
    if not args.compile:
        parser.error("nothing to do (pass --compile)")
    print(compile_pipeline(args.output, args.image))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
