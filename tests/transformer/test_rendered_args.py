"""The router container we render must start: its command and args parse with the entry point they name."""

from __future__ import annotations

from kserve_llmd.kube.builders import RouterOptions
from kserve_llmd.kube.builders.router import router_container
from kserve_llmd.kube.builders.runtime import KV_EVENTS_PORT, KV_REPLAY_PORT
from kserve_llmd.transformer.server import build_config, parse_args


def test_rendered_transformer_args_parse_with_kserve_flags_appended() -> None:
    container = router_container(RouterOptions(selector={"llm-d.ai/model": "qwen"}), transformer=True)
    assert container.command == ["python", "-m", "kserve_llmd.transformer"]
    kserve_flags = ["--model_name", "qwen", "--predictor_host", "qwen-decode.ns", "--http_port", "8080"]
    argv = [*(container.args or []), *kserve_flags]
    args = parse_args(argv)
    assert args.ignored == []
    assert args.discovery == "kubernetes"
    assert args.selector == "llm-d.ai/model=qwen"
    assert (args.kv_events_port, args.kv_replay_port) == (KV_EVENTS_PORT, KV_REPLAY_PORT)  # what the runtimes open
    assert args.port == 8080
    assert build_config(args).port == 8080


def test_rendered_standalone_router_args_parse() -> None:
    container = router_container(RouterOptions(selector={"app": "x"}, preset="least-load"))
    args = parse_args(container.args or [])
    assert args.ignored == []
    assert args.preset == "least-load"


def test_rendered_router_settings_become_the_routers_config() -> None:
    options = RouterOptions(selector={"app": "x"}, settings={"timeouts.first_byte": 1200, "pd.fallback_to_aggregated":
                                                             False, "limits.max_connections": "8192"})
    container = router_container(options, transformer=True)
    config = build_config(parse_args([*(container.args or []), "--http_port", "8080"]))
    assert config.timeouts.first_byte == 1200.0
    assert config.pd.fallback_to_aggregated is False
    assert config.limits.max_connections == 8192
