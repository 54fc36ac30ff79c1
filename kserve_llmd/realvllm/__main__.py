"""``python -m kserve_llmd.realvllm [--ready-file PATH] [-- extra vLLM args]``: serve one real engine until
SIGINT/SIGTERM, printing (and optionally writing) ``{"url", "kv_events", "replay", "topic", "log"}``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from kserve_llmd.realvllm import RealVllm, available


def _write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def _serve(args: argparse.Namespace) -> int:
    reason = available()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    async with RealVllm(port=args.port, extra_args=args.vllm_args, log_dir=args.log_dir) as engine:
        info = {"url": engine.url, "kv_events": engine.kv_events, "replay": engine.replay, "topic": engine.topic,
                "log": str(engine.log_path), "pid": engine.pid, "startup_seconds": round(engine.startup_seconds, 1)}
        text = json.dumps(info)
        print(text, flush=True)
        if args.ready_file:
            _write_atomically(args.ready_file, text)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kserve_llmd.realvllm", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    parser.add_argument("--ready-file", help="write the JSON info here (atomically) once /health answers")
    parser.add_argument("--log-dir", help="folder for the engine log (default: a new temp folder)")
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="extra vLLM arguments after --")
    args = parser.parse_args(argv)
    if args.vllm_args[:1] == ["--"]:
        args.vllm_args = args.vllm_args[1:]
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
