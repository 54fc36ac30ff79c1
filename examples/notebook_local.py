"""Notebook-style: a prefill/decode deployment on this machine (simulated engines + the router), one streamed chat
completion through it, then everything stopped. No GPU, no cluster; about a second at time-scale 0.05.

    python examples/notebook_local.py
"""

# %% Start two engine pools and the router as local processes (ports are ephemeral).
import json
import urllib.request

from kserve_llmd.sdk import LocalDeployment, PoolSpec, RouterSpec

deployment = LocalDeployment(
    "sim-model",
    prefill=PoolSpec(replicas=1),
    decode=PoolSpec(replicas=2),
    router=RouterSpec(preset="pd-decider"),
    profile="tiny",
    time_scale=0.05,
)
for step in deployment.render():  # the plan: which processes, with which arguments
    print(step["name"], " ".join(step["command"][2:6]), "...")

# %% Apply, wait, and stream one chat completion (OpenAI API, server-sent events).
with deployment:
    print("router:", deployment.endpoint, "engines:", [e["url"] for e in deployment.engines])
    body = {"model": "sim-model", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Explain prefill/decode disaggregation in one line."}]}
    request = urllib.request.Request(f"{deployment.endpoint}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    pieces = []
    with urllib.request.urlopen(request, timeout=60) as response:
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                pieces.append(delta)
    print("streamed:", "".join(pieces))
    assert pieces, "no tokens streamed"

# %% Leaving the `with` block stopped every process (SIGTERM, then SIGKILL after a grace period).
print("stopped")
