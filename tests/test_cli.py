from __future__ import annotations

import subprocess
import sys

import pytest

from kserve_llmd.cli import COMMANDS, build_parser


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kserve_llmd", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_top_level_help_lists_every_command() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("sim", "router", "bench", "demo", "render", "deploy"):
        assert name in out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name: str) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "--help"])
    assert exc.value.code == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unknown_option_is_a_clear_error_with_exit_2(name: str) -> None:
    out = _cli(name, "--no-such-option")
    assert out.returncode == 2
    assert "unrecognized arguments: --no-such-option" in out.stderr


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys; sys.argv=['x','--definitely-not-an-option']; "
        "import kserve_llmd, kserve_llmd.cli, kserve_llmd.tokenizer, kserve_llmd.wire.kv_events; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
