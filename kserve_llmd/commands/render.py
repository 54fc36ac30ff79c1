"""`kserve-llmd render`: write the manifests of one model deployment, validated against the CRD schemas.

Exit codes: 0 written; 2 bad arguments or spec (the message names the field); 1 an object failed validation
(nothing is written then). Schemas come from the copy vendored in the package unless ``--crds DIR`` is given.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HELP = "Render KServe and Gateway API manifests for a model, validated against the CRD schemas."


def default_name(model: str) -> str:
    """An object name from a model id: ``Qwen/Qwen3-0.6B`` → ``qwen3-0-6b`` (a DNS-1035 label)."""
    name = re.sub(r"[^a-z0-9]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:45].rstrip("-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="required: served model name, e.g. Qwen/Qwen3-0.6B")
    parser.add_argument("--model-uri", help="required: where KServe fetches the weights: hf://, s3://, pvc://")
    parser.add_argument("--name", help="object name prefix (default: derived from --model)")
    parser.add_argument("--namespace", help="namespace of the namespaced objects (default: none, kubectl's)")
    parser.add_argument("--prefill-replicas", type=int, default=1, help="prefill pods; 0 = aggregated (default 1)")
    parser.add_argument("--decode-replicas", type=int, default=1, help="decode pods (default 1)")
    parser.add_argument("--format", choices=["isvc", "llmisvc"], default="isvc",
                        help="isvc: InferenceServices + our router; llmisvc: KServe's LLMInferenceService")
    parser.add_argument("--backend", choices=["vllm", "sim"], default="vllm",
                        help="vllm (GPU) or sim (our simulator, CPU-only clusters)")
    parser.add_argument("--image", help="engine image (default: vllm/vllm-openai, or ours for sim)")
    parser.add_argument("--router-image", help="router image (default: ours)")
    parser.add_argument("--gpus-per-pod", type=int, default=1, help="nvidia.com/gpu per engine pod (default 1)")
    parser.add_argument("--preset", help="router scheduling preset (default: pd-decider, or precise-prefix)")
    parser.add_argument("--non-cached-tokens", type=int, default=0, help="P/D decider threshold (0 = always)")
    parser.add_argument("--router-set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a router setting (the router's --set), e.g. timeouts.first_byte=1200; repeat")
    parser.add_argument("--no-runtimes", action="store_true", help="do not render ServingRuntimes (cluster has them)")
    parser.add_argument("--crds", type=Path, help="validate against the CRDs in this directory instead of the "
                        "schemas vendored in the package")
    parser.add_argument("--no-validate", action="store_true", help="write without validating (not recommended)")
    parser.add_argument("-o", "--output", help="required: output directory, or - for a YAML stream on stdout")


def _setting(item: str) -> tuple[str, str]:
    from kserve_llmd.errors import ConfigError

    key, eq, value = item.partition("=")
    if not eq:
        raise ConfigError(f"--router-set {item!r}: expected SECTION.FIELD=VALUE", param="router-set")
    return key.strip(), value.strip()


def run(args: argparse.Namespace) -> int:
    from kserve_llmd.errors import ConfigError, ManifestValidationError
    from kserve_llmd.kube import crds, render
    from kserve_llmd.kube.builders import parse_spec

    # Checked here rather than by argparse so that an unknown option is reported as such first.
    missing = [flag for flag, value in (("--model", args.model), ("--model-uri", args.model_uri),
                                        ("-o/--output", args.output)) if not value]
    if missing:
        print(f"kserve-llmd render: the following arguments are required: {', '.join(missing)}", file=sys.stderr)
        return 2
    pool = {"gpus": args.gpus_per_pod}
    data = {
        "name": args.name or default_name(args.model),
        "model": args.model,
        "model_uri": args.model_uri,
        "namespace": args.namespace,
        "format": args.format,
        "backend": args.backend,
        "prefill": {"replicas": args.prefill_replicas, **pool},
        "decode": {"replicas": args.decode_replicas, **pool},
        "image": args.image,
        "router_preset": args.preset,
        "non_cached_tokens": args.non_cached_tokens,
    }
    if args.router_image:
        data["router_image"] = args.router_image
    try:
        data["router_settings"] = dict(_setting(item) for item in args.router_set)
        spec = parse_spec(data)
        registry = None
        if args.crds is not None and not args.no_validate:
            registry = crds.registry_for(args.crds.resolve())
    except (ConfigError, ManifestValidationError) as exc:
        print(f"kserve-llmd render: {exc.message}", file=sys.stderr)
        return 2
    objects = render.render_objects(spec, runtimes=not args.no_runtimes)
    try:
        if args.output == "-":
            if not args.no_validate:
                crds.validate_all(objects, registry)
            sys.stdout.write(render.to_yaml_stream(objects))
        else:
            for path in render.write_manifests(objects, Path(args.output), validate=not args.no_validate,
                                               registry=registry):
                print(path)
    except ManifestValidationError as exc:
        print(f"kserve-llmd render: invalid manifest: {exc.message}", file=sys.stderr)
        return 1
    return 0
