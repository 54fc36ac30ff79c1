"""`kserve-llmd render`."""

from __future__ import annotations

import argparse
import sys

HELP = "Render KServe and Gateway API manifests for a model, validated against the CRD schemas."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kserve-llmd render: not built yet", file=sys.stderr)
    return 1
