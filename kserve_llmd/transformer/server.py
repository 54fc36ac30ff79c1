"""``python -m kserve_llmd.transformer``: the router under KServe's transformer argument contract.

Arguments: every ``kserve-llmd router`` flag (``--preset``, ``--config``, ``--endpoint``/``--prefill``/``--decode``,
...), KServe's injected ``--model_name``, ``--predictor_host``, ``--http_port`` (and ``--grpc_port``, ``--workers``,
``--protocol``, accepted and unused), discovery flags (``--discovery kubernetes --selector L --namespace NS
--engine-port 8080 --kv-events-port 5557 --kv-replay-port 5558 [--kubeconfig F]``), and nothing else: any other
``--flag`` is logged once and ignored, because KServe versions add injected flags over time. ``--kv-events-port`` is
the engines' KV-event PUB (0: ask each engine, ``GET /kv_event_sources``, which also names its replay socket);
``--kv-replay-port`` their replay ROUTER, from which the router catches up on join and fills sequence gaps (0: none;
ignored when ``--kv-events-port`` is 0).

Discovery: with a label selector, ``KubernetesDiscovery`` over the pods of the namespace (the pods of the prefill
and decode InferenceServices, by their ``llm-d.ai/model`` label); otherwise the static endpoints given, or else the
predictor host as the one endpoint (an aggregated InferenceService). ``--http_port`` wins over ``--port``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kserve_llmd.errors import ConfigError, KserveLlmdError

log = logging.getLogger(__name__)
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def build_parser() -> argparse.ArgumentParser:
    from kserve_llmd.commands import router as router_command

    parser = argparse.ArgumentParser(prog="python -m kserve_llmd.transformer",
                                     description="The kserve-llmd router as a KServe transformer.")
    router_command.add_arguments(parser)
    kserve = parser.add_argument_group("KServe (injected by the controller)")
    kserve.add_argument("--model_name", help="the InferenceService's model name")
    kserve.add_argument("--predictor_host", help="host[:port] of the predictor (used when nothing is discovered)")
    kserve.add_argument("--http_port", type=int, help="port to listen on (wins over --port)")
    kserve.add_argument("--grpc_port", type=int, help="accepted, unused (no gRPC surface)")
    kserve.add_argument("--workers", type=int, help="accepted, unused (one event loop)")
    kserve.add_argument("--protocol", help="accepted, unused (the router speaks the OpenAI API)")
    found = parser.add_argument_group("discovery")
    found.add_argument("--discovery", choices=["static", "kubernetes"], default=None,
                       help="default: kubernetes when --selector is given, else static")
    found.add_argument("--selector", help="label selector of the engine pods, e.g. llm-d.ai/model=qwen3")
    found.add_argument("--namespace", help="namespace of the engine pods (default: the pod's own)")
    found.add_argument("--engine-port", type=int, default=8080, help="the engines' OpenAI HTTP port")
    found.add_argument("--kv-events-port", type=int, default=5557, help="the engines' KV-event port (0: ask)")
    found.add_argument("--kv-replay-port", type=int, default=5558,
                       help="the engines' KV-event replay port (0: none)")
    found.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, or KSERVE_LLMD_KUBE_HOST)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(list(argv))
    args.ignored = unknown
    if args.http_port is not None:
        args.port = args.http_port
    if args.discovery is None:
        args.discovery = "kubernetes" if args.selector else "static"
    if args.discovery == "kubernetes" and not args.selector:
        raise ConfigError("--discovery kubernetes needs --selector", param="selector")
    return args


def build_config(args: argparse.Namespace) -> Any:
    """The ``RouterConfig``; the predictor becomes the one endpoint when nothing else is configured."""
    from kserve_llmd.commands import router as router_command
    from kserve_llmd.router.config import EndpointSpec, RouterConfig

    config = router_command.build_config(args)
    assert isinstance(config, RouterConfig)
    if args.discovery == "static" and not config.all_endpoints():
        if not args.predictor_host:
            raise ConfigError("no endpoints: give --selector, --endpoint/--prefill/--decode or --predictor_host",
                              param="endpoints")
        host = args.predictor_host
        url = host if host.startswith(("http://", "https://")) else f"http://{host}"
        config = config.model_copy(update={"endpoints": [EndpointSpec.parse(url)]})
    return config


def build_discovery(args: argparse.Namespace, config: Any, environ: Mapping[str, str]) -> tuple[Any, Any]:
    """``(discovery, api_client or None)`` for the parsed arguments."""
    if args.discovery == "static":
        from kserve_llmd.router.discovery import StaticDiscovery

        return StaticDiscovery(config.all_endpoints()), None
    from kserve_llmd.kube.discovery import KubernetesDiscovery
    from kserve_llmd.kube.ops import KubeConfig

    kube = KubeConfig(kubeconfig=args.kubeconfig) if args.kubeconfig else KubeConfig.detect(environ)
    namespace = args.namespace or environ.get("POD_NAMESPACE") or _own_namespace()
    api_client = kube.api_client()
    discovery = KubernetesDiscovery(namespace, args.selector, args.engine_port, api_client=api_client,
                                    kv_events_port=args.kv_events_port or None,
                                    kv_replay_port=args.kv_replay_port or None)
    log.info("discovery: pods %r in namespace %s; engine port %d, KV events %s, replay %s", args.selector, namespace,
             args.engine_port, args.kv_events_port or "asked from each engine",
             (args.kv_replay_port or "none") if args.kv_events_port else "asked from each engine")
    return discovery, api_client


def _own_namespace() -> str:
    try:
        return SA_NAMESPACE_FILE.read_text().strip()
    except OSError:
        raise ConfigError("--namespace is required outside a pod", param="namespace") from None


async def serve(config: Any, discovery: Any, api_client: Any, ready_file: str | None) -> int:
    """Run the router until SIGTERM/SIGINT; write ``{"url": ...}`` to ``ready_file`` once listening."""
    import orjson

    from kserve_llmd.router.app import Router
    from kserve_llmd.router.process import fit_open_files, settle_heap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fit_open_files(config)
    try:
        async with Router(config, discovery) as router:
            settle_heap()
            if ready_file:
                path = Path(ready_file)
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                tmp.write_bytes(orjson.dumps({"url": router.url, "admin_url": router.admin_url}))
                tmp.replace(path)
            print(f"kserve-llmd transformer listening on {router.url}", file=sys.stderr, flush=True)
            await stop.wait()
            await router.drain()
    finally:
        if api_client is not None:
            api_client.close()
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.ignored:
        log.info("ignoring arguments this transformer does not use: %s", " ".join(args.ignored))
    log.info("KServe model %s, predictor %s, discovery %s", args.model_name, args.predictor_host, args.discovery)
    try:
        config = build_config(args)
        discovery, api_client = build_discovery(args, config, os.environ if environ is None else environ)
        return asyncio.run(serve(config, discovery, api_client, args.ready_file))
    except KserveLlmdError as exc:
        print(f"kserve-llmd transformer: {exc.message}", file=sys.stderr)
        return 2
