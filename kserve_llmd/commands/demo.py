"""`kserve-llmd demo`."""

from __future__ import annotations

import argparse
import sys

HELP = "Local end-to-end demo: simulator cluster, router configurations compared, report written."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd demo: not built yet", file=sys.stderr)
    return 1
