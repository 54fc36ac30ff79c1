"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT.parent / "shared" / "crds"


@pytest.fixture
def crds_dir() -> Path:
    if not CRDS.is_dir():
        pytest.skip(f"CRD schemas not found at {CRDS} (the shared/ folder beside the checkout)")
    return CRDS
