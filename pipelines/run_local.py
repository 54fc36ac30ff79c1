"""Run the rollout pipeline for real on this machine: ``kfp.local`` (SubprocessRunner, no Docker, no venv per task)
against local deployments (simulator engines + router as local processes).

    python pipelines/run_local.py --candidate good   # ends with PROMOTE
    python pipelines/run_local.py --candidate bad    # ends with ROLLBACK (the candidate's prefill is slow)

Every process any step started is stopped at the end, whatever happened (``--keep`` leaves the serving version up).
"""

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``pipelines`` importable
    sys.path.insert(0, str(ROOT))

SCENARIO = str(Path(__file__).resolve().parent / "scenarios" / "canary-smoke.yaml")
#: Local SLOs sized for the tiny simulator profile; the bad candidate's 300 ms TTFT violates the first.
LOCAL_SLOS = "ttft_p95_ms<=150,itl_p95_ms<=50,error_rate<=0.01"
#: Absolute allowances: relative ones are noise on millisecond-scale local latencies.
LOCAL_REGRESSION = "ttft_p95_ms:100,itl_p95_ms:20,error_rate:0.01"
CANDIDATES: dict[str, str] = {
    "good": "",
    # llm-d-inference-sim-style override (milliseconds): every prefill step takes 300 ms.
    "bad": "--time-to-first-token 300",
}


@dataclass(frozen=True)
class LocalRun:
    decision: str  # promote | rollback
    serving: dict[str, Any]  # the DeploymentState of the version left serving
    evidence: dict[str, Any]  # the canary's evidence JSON


def run(
    candidate: str = "good",
    *,
    workdir: Path | None = None,
    keep: bool = False,
    time_scale: float = 1.0,
    **overrides: Any,
) -> LocalRun:
    """Run the whole pipeline locally; raises on a failed step (after stopping every process it started)."""
    from kfp import local

    from kserve_llmd.rollout.local import cleanup_workdir
    from pipelines.pipeline import llmd_rollout

    workdir = Path(workdir or tempfile.mkdtemp(prefix="llmd-rollout-"))
    params: dict[str, Any] = {
        "target": "local", "workdir": str(workdir / "deployments"), "scenario": SCENARIO, "slos": LOCAL_SLOS,
        "max_regression": LOCAL_REGRESSION, "candidate_sim_args": CANDIDATES[candidate], "time_scale": time_scale,
        "ready_timeout_s": 60.0, "teardown_at_end": not keep, **overrides,
    }  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "kfp"))
    try:
        with warnings.catch_warnings():
            # kfp warns that a non-"python" image may misbehave outside a container; the SubprocessRunner ignores
            # the image and runs each task in THIS interpreter (where kserve_llmd is installed), so it does not apply.
            warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
            # Display names (and caching options) only matter in the KFP UI; the local runner says it ignores them.
            warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*\] have no effect in the current local")
            task = llmd_rollout(**params)
        serving = json.loads(task.output)
    finally:
        if not keep:
            cleanup_workdir(workdir / "deployments")
    decision = "promote" if serving["name"] == params.get("candidate_name", "canary") else "rollback"
    evidence_files = sorted((workdir / "kfp").glob("**/canary/evidence"))
    evidence = json.loads(evidence_files[-1].read_text()) if evidence_files else {}
    return LocalRun(decision=decision, serving=serving, evidence=evidence)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), default="good")
    parser.add_argument("--workdir", type=Path, default=None, help="logs, ready files and KFP outputs (default: tmp)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulator time scale")
    parser.add_argument("--keep", action="store_true", help="leave the serving version running")
    args = parser.parse_args(argv)
    result = run(args.candidate, workdir=args.workdir, keep=args.keep, time_scale=args.time_scale)
    print(f"\n{result.decision.upper()}: serving {result.serving['name']} at {result.serving['endpoint']}")
    for reason in result.evidence.get("reasons", []):
        print(f"  - {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
