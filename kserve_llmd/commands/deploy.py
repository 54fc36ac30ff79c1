"""`kserve-llmd deploy`."""

from __future__ import annotations

import argparse
import sys

HELP = "Apply rendered manifests to a cluster and wait until ready."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd deploy: not built yet", file=sys.stderr)
    return 1
