"""`kserve-llmd router`."""

from __future__ import annotations

import argparse

HELP = "Run the cache-aware, load-aware OpenAI router (standalone)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: ephemeral)")
    parser.add_argument("--admin-port", type=int, help="also serve /health and /metrics here, answered even when "
                                                       "client connections are at their cap (0: ephemeral)")
    spec = "URL[=PUB[,REPLAY]]"
    parser.add_argument("--endpoint", action="append", default=[], metavar=spec,
                        help="an engine (role both); repeat. PUB: the ZMQ endpoint of its KV-event publisher, REPLAY: "
                             "that publisher's replay ROUTER (vLLM's endpoint / replay_endpoint), e.g. "
                             "http://e:8000=tcp://e:5557,tcp://e:5558; without =PUB both are asked from the engine "
                             "(GET /kv_event_sources); PUB without REPLAY: no replay")
    parser.add_argument("--prefill", action="append", default=[], metavar=spec, help="a prefill engine (as --endpoint)")
    parser.add_argument("--decode", action="append", default=[], metavar=spec, help="a decode engine (as --endpoint)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="an EndpointPickerConfig YAML (llm-d format)")
    source.add_argument("--preset", metavar="NAME", help="a built-in scheduler preset (default precise-prefix)")
    parser.add_argument("--tokenizer", default="builtin", help="builtin | PATH to tokenizer.json | engine")
    parser.add_argument("--ready-file", metavar="PATH", help='write {"url": ...} here once listening')
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/*")
    parser.add_argument("--scrape-interval", type=float, default=0.1, help="seconds between metrics scrapes")
    parser.add_argument("--first-byte-timeout", type=float, default=600.0, help="seconds to wait for an engine")
    parser.add_argument("--seed", type=int, help="seed of the scheduler's random tie-breaks")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="any field of RouterConfig's timeouts, limits, scrape and pd sections, e.g. "
                             "limits.max_body_bytes=33554432 or timeouts.total=7200; repeat. It wins over a flag that "
                             "sets the same field (--scrape-interval: scrape.interval, --first-byte-timeout: "
                             "timeouts.first_byte, --pd-*: the pd fields)")
    pd = parser.add_argument_group("prefill/decode (RouterConfig.pd)")
    pd.add_argument("--pd-fallback", action=argparse.BooleanOptionalAction, default=None,
                    help="a failed prefill leg is served aggregated by the decode engine (default), or, with "
                         "--no-pd-fallback, fails the request with an OpenAI-shaped 502/504")
    pd.add_argument("--pd-prefill-timeout", type=float, metavar="SECONDS",
                    help="bound on the whole prefill leg (default 600)")
    pd.add_argument("--pd-release-path", metavar="PATH",
                    help="POSTed on the prefill engine to free a lease the decode will not pull "
                         "(default none: vLLM has no such call; the simulator's is /_sim/kv_pull)")


def build_config(args: argparse.Namespace) -> object:
    from kserve_llmd.router.config import (
        EndpointSpec,
        RouterConfig,
        load_preset,
        load_scheduler_config,
        parse_settings,
        settings_section,
    )

    scheduler = load_scheduler_config(args.config) if args.config else load_preset(args.preset or "precise-prefix")
    given = {"fallback_to_aggregated": args.pd_fallback, "prefill_timeout": args.pd_prefill_timeout,
             "release_path": args.pd_release_path}
    sets = parse_settings(args.set)
    return RouterConfig(
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        endpoints=[EndpointSpec.parse(e) for e in args.endpoint],
        prefill=[EndpointSpec.parse(e, "prefill") for e in args.prefill],
        decode=[EndpointSpec.parse(e, "decode") for e in args.decode],
        scheduler=scheduler,
        tokenizer=args.tokenizer,
        api_key=args.api_key,
        scrape=settings_section("scrape", {"interval": args.scrape_interval, **sets["scrape"]}),
        timeouts=settings_section("timeouts", {"first_byte": args.first_byte_timeout, **sets["timeouts"]}),
        limits=settings_section("limits", sets["limits"]),
        seed=args.seed,
        # flags not given keep PDConfig's defaults
        pd=settings_section("pd", {**{k: v for k, v in given.items() if v is not None}, **sets["pd"]}),
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import sys

    from pydantic import ValidationError

    from kserve_llmd.errors import ConfigError

    try:
        config = build_config(args)
    except (ConfigError, ValidationError) as exc:
        print(f"kserve-llmd router: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        logging.getLogger(__name__).info("uvloop not installed; using asyncio's default loop")
        return asyncio.run(_serve(config, args.ready_file))
    return uvloop.run(_serve(config, args.ready_file))


async def _serve(config: object, ready_file: str | None) -> int:
    import asyncio
    import os
    import signal
    import sys
    from pathlib import Path

    import orjson

    from kserve_llmd.errors import ConfigError
    from kserve_llmd.router.app import Router
    from kserve_llmd.router.config import RouterConfig
    from kserve_llmd.router.discovery import StaticDiscovery
    from kserve_llmd.router.process import fit_open_files, settle_heap

    assert isinstance(config, RouterConfig)
    try:
        router = Router(config, StaticDiscovery(config.all_endpoints()))
    except ConfigError as exc:
        print(f"kserve-llmd router: {exc}", file=sys.stderr)
        return 2
    fit_open_files(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with router:
        settle_heap()
        if ready_file:
            path = Path(ready_file)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(orjson.dumps({"url": router.url, "admin_url": router.admin_url}))
            tmp.replace(path)
        print(f"kserve-llmd router listening on {router.url}", file=sys.stderr, flush=True)
        await stop.wait()
        await router.drain()
    return 0
