"""`kserve-llmd sim`."""

from __future__ import annotations

import argparse
import sys

HELP = "Run N simulated vLLM engines (OpenAI API, KV events, metrics) in one process."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd sim: not built yet", file=sys.stderr)
    return 1
