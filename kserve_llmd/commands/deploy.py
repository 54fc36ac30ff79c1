"""`kserve-llmd deploy`: render → apply → wait until ready → print the endpoint (or ``--delete``).

Targets: ``--local`` (simulated engines and the router as local processes, kept running until Ctrl-C/SIGTERM),
``--kubeconfig PATH``, ``--in-cluster``, ``--kube-host URL`` (no auth: ``kubectl proxy``, the API double), or by
default ``KSERVE_LLMD_KUBE_HOST`` / in-cluster / ``~/.kube/config`` in that order. The endpoint goes to stdout,
progress to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kserve_llmd.errors import ConfigError  # light: the error classes only

if TYPE_CHECKING:
    from kserve_llmd.sdk import PoolSpec

HELP = "Apply rendered manifests to a cluster (or start local processes) and wait until ready."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--model", help="served model name, e.g. Qwen/Qwen3-0.6B (required)")
    a("--model-uri", help="hf://, s3://, pvc://... (cluster targets)")
    a("--name", help="object name prefix (default: from the model name)")
    a("--namespace", default="default")
    a("--format", choices=["isvc", "llmisvc"], default="isvc")
    a("--backend", choices=["vllm", "sim"], default="vllm", help="engine image on the cluster")
    a("--prefill-replicas", type=int, default=1, help="0: no prefill/decode split")
    a("--decode-replicas", type=int, default=1)
    a("--gpus", type=int, default=1, help="GPUs per engine pod")
    a("--preset", help="router preset (default: pd-decider with prefill, else precise-prefix)")
    a("--timeout", type=float, default=600.0, help="seconds to wait until ready")
    a("--no-wait", action="store_true", help="apply and return without waiting")
    a("--delete", action="store_true", help="delete what --model/--name would deploy")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--local", action="store_true", help="simulated engines + router as local processes")
    target.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file")
    target.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    target.add_argument("--kube-host", metavar="URL", help="API server URL, no authentication")
    a("--context", help="kubeconfig context")
    local = parser.add_argument_group("--local")
    local.add_argument("--profile", default="tiny", help="simulator timing profile")
    local.add_argument("--time-scale", type=float, default=1.0, help="multiply simulated durations")
    local.add_argument("--port", type=int, default=0, help="router port (0: ephemeral)")


def run(args: argparse.Namespace) -> int:
    from kserve_llmd.errors import KserveLlmdError, NotReadyError

    try:
        if not args.model:
            raise ConfigError("--model is required")
        return _run_local(args) if args.local else _run_cluster(args)
    except (ConfigError, ValueError) as exc:
        print(f"kserve-llmd deploy: {exc}", file=sys.stderr)
        return 2
    except NotReadyError as exc:
        print(f"kserve-llmd deploy: not ready: {exc.message}", file=sys.stderr)
        return 1
    except KserveLlmdError as exc:
        print(f"kserve-llmd deploy: {exc.message}", file=sys.stderr)
        return 1


def _pools(args: argparse.Namespace) -> tuple[PoolSpec, PoolSpec]:
    from kserve_llmd.sdk import PoolSpec

    return (PoolSpec(replicas=args.prefill_replicas, gpus=args.gpus),
            PoolSpec(replicas=args.decode_replicas, gpus=args.gpus))


def _run_cluster(args: argparse.Namespace) -> int:
    import os

    from kserve_llmd.kube.ops import KubeConfig
    from kserve_llmd.sdk import LLMDeployment, RouterSpec

    if not args.model_uri:
        raise ConfigError("--model-uri is required for a cluster deployment")
    if args.kube_host:
        kube = KubeConfig(host=args.kube_host)
    elif args.in_cluster:
        kube = KubeConfig(in_cluster=True)
    elif args.kubeconfig or args.context:
        kube = KubeConfig(kubeconfig=args.kubeconfig, context=args.context)
    else:
        kube = KubeConfig.detect(os.environ)
    prefill, decode = _pools(args)
    deployment = LLMDeployment(args.model, args.model_uri, name=args.name, namespace=args.namespace,
                               prefill=prefill, decode=decode, router=RouterSpec(preset=args.preset),
                               format=args.format, backend=args.backend, kube=kube)
    try:
        if args.delete:
            deployment.delete()
            print(f"deleted {deployment.kind} {deployment.namespace}/{deployment.name}", file=sys.stderr)
            return 0
        deployment.apply()
        print(f"applied {deployment.kind} {deployment.namespace}/{deployment.name}", file=sys.stderr)
        if not args.no_wait:
            print(deployment.wait_ready(args.timeout))
        return 0
    finally:
        deployment.close()


def _run_local(args: argparse.Namespace) -> int:
    import signal
    import threading

    from kserve_llmd.sdk import LocalDeployment, RouterSpec

    if args.delete:
        raise ConfigError("--delete is for cluster targets: a local deployment stops with Ctrl-C")
    prefill, decode = _pools(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with LocalDeployment(args.model, prefill=prefill, decode=decode, router=RouterSpec(preset=args.preset),
                         profile=args.profile, time_scale=args.time_scale, port=args.port) as deployment:
        print(deployment.endpoint, flush=True)
        print("local deployment running; Ctrl-C stops it", file=sys.stderr, flush=True)
        stop.wait()
    return 0
