"""`kserve-llmd router`."""

from __future__ import annotations

import argparse

HELP = "Run the cache-aware, load-aware OpenAI router (standalone)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: ephemeral)")
    parser.add_argument("--endpoint", action="append", default=[], metavar="URL[=ZMQ]",
                        help="an engine (role both); repeat. ZMQ: its KV-event publisher, else asked from the engine")
    parser.add_argument("--prefill", action="append", default=[], metavar="URL[=ZMQ]", help="a prefill engine")
    parser.add_argument("--decode", action="append", default=[], metavar="URL[=ZMQ]", help="a decode engine")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="an EndpointPickerConfig YAML (llm-d format)")
    source.add_argument("--preset", metavar="NAME", help="a built-in scheduler preset (default precise-prefix)")
    parser.add_argument("--tokenizer", default="builtin", help="builtin | PATH to tokenizer.json | engine")
    parser.add_argument("--ready-file", metavar="PATH", help='write {"url": ...} here once listening')
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/*")
    parser.add_argument("--scrape-interval", type=float, default=0.1, help="seconds between metrics scrapes")
    parser.add_argument("--first-byte-timeout", type=float, default=600.0, help="seconds to wait for an engine")
    parser.add_argument("--seed", type=int, help="seed of the scheduler's random tie-breaks")


def build_config(args: argparse.Namespace) -> object:
    from kserve_llmd.router.config import (
        EndpointSpec,
        RouterConfig,
        ScrapeConfig,
        TimeoutsConfig,
        load_preset,
        load_scheduler_config,
    )

    scheduler = load_scheduler_config(args.config) if args.config else load_preset(args.preset or "precise-prefix")
    return RouterConfig(
        host=args.host,
        port=args.port,
        endpoints=[EndpointSpec.parse(e) for e in args.endpoint],
        prefill=[EndpointSpec.parse(e, "prefill") for e in args.prefill],
        decode=[EndpointSpec.parse(e, "decode") for e in args.decode],
        scheduler=scheduler,
        tokenizer=args.tokenizer,
        api_key=args.api_key,
        scrape=ScrapeConfig(interval=args.scrape_interval),
        timeouts=TimeoutsConfig(first_byte=args.first_byte_timeout),
        seed=args.seed,
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

    assert isinstance(config, RouterConfig)
    try:
        router = Router(config, StaticDiscovery(config.all_endpoints()))
    except ConfigError as exc:
        print(f"kserve-llmd router: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with router:
        if ready_file:
            path = Path(ready_file)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(orjson.dumps({"url": router.url}))
            tmp.replace(path)
        print(f"kserve-llmd router listening on {router.url}", file=sys.stderr, flush=True)
        await stop.wait()
    return 0
