"""The ``kserve-llmd`` console script. Subcommands are registered explicitly below, one module each.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; command modules
import nothing heavy at module level, so ``--help`` is instant and nothing runs at import.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from kserve_llmd import __version__
from kserve_llmd.commands import bench, demo, deploy, render, router, sim

COMMANDS: dict[str, ModuleType] = {
    "sim": sim,
    "router": router,
    "bench": bench,
    "demo": demo,
    "render": render,
    "deploy": deploy,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kserve-llmd",
        description="llm-d-style distributed LLM inference for KServe and Kubeflow.",
    )
    parser.add_argument("--version", action="version", version=f"kserve-llmd {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = COMMANDS[args.command].run(args)
    return result
