"""`kserve-llmd bench`."""

from __future__ import annotations

import argparse
import sys

HELP = "Benchmark an OpenAI-compatible endpoint, or compare router configurations."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd bench: not built yet", file=sys.stderr)
    return 1
