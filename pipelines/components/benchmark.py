"""``benchmark``: run a named scenario against an endpoint; headline metrics and a Markdown report."""

from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output

from pipelines.components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def benchmark(
    endpoint: str,
    scenario: str,
    model: str,
    seed: int,
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> None:
    """Logs ttft/itl/e2e p50/p90/p95/p99 (ms), error_rate and throughput as metrics."""
    from kserve_llmd.rollout import steps

    steps.benchmark(endpoint, scenario, model, seed, log_metric=metrics.log_metric, report_path=report.path)
