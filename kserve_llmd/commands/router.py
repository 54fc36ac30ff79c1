"""`kserve-llmd router`."""

from __future__ import annotations

import argparse
import sys

HELP = "Run the cache-aware, load-aware OpenAI router (standalone)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd router: not built yet", file=sys.stderr)
    return 1
