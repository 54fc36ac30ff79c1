"""Notebook-style: a P/D model on KServe. Render (validated against the CRD schemas), apply, wait until Ready,
read the endpoint, delete.

Where the cluster is: ``KSERVE_LLMD_KUBE_HOST`` (an API URL without auth, e.g. ``kubectl proxy`` or the test
suite's API double), else in-cluster, else ``~/.kube/config``. Namespace: ``KSERVE_LLMD_NAMESPACE`` (default
``default``).

    python examples/notebook_cluster.py
"""

# %% Describe the deployment: 1 prefill + 2 decode vLLM pods behind the kserve-llmd router (a KServe transformer).
import os

from kserve_llmd.kube.ops import KubeConfig
from kserve_llmd.sdk import LLMDeployment, PoolSpec, RouterSpec

deployment = LLMDeployment(
    "Qwen/Qwen3-0.6B",
    "hf://Qwen/Qwen3-0.6B",
    namespace=os.environ.get("KSERVE_LLMD_NAMESPACE", "default"),
    prefill=PoolSpec(replicas=1, gpus=1),
    decode=PoolSpec(replicas=2, gpus=1),
    router=RouterSpec(preset="pd-decider"),
    kube=KubeConfig.detect(os.environ),  # parsed once, here
    poll=0.05 if os.environ.get("KSERVE_LLMD_KUBE_HOST") else 2.0,
)

# %% Render: plain dicts, validated against the real CRD schemas (no cluster needed).
for obj in deployment.render():
    print(f"{obj['kind']:<16} {obj['metadata']['name']}")

# %% Apply (create, or merge-patch what exists), then wait until every InferenceService is Ready.
deployment.apply()
endpoint = deployment.wait_ready(timeout=900)
print("endpoint:", endpoint)  # the OpenAI API lives under {endpoint}/v1/...

# %% Clean up (ServingRuntimes stay: other deployments in the namespace share them).
deployment.delete()
deployment.close()
print("deleted")
