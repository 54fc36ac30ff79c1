"""Real-vLLM tests are opt-in: each module starts 1-2 real engines (~2.5 GB and 25-90 s each on 2 cores), so a plain
``pytest`` of the whole suite skips them even when scripts/real-vllm-setup has been run. Select them with
``pytest -m vllm tests/vllm`` (any -m expression naming ``vllm``) or set ``KSERVE_LLMD_REAL_VLLM=1``."""

from __future__ import annotations

import os

import pytest

OPT_IN = "real-vLLM tests are opt-in: run `pytest -m vllm tests/vllm` (or set KSERVE_LLMD_REAL_VLLM=1)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = str(config.getoption("markexpr", "") or "")
    selected = "vllm" in markexpr.replace("not vllm", "") or os.environ.get("KSERVE_LLMD_REAL_VLLM") == "1"
    if selected:
        return
    skip = pytest.mark.skip(reason=OPT_IN)
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)
