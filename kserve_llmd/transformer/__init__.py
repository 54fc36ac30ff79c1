"""Our router as a KServe transformer (REFERENCE 3).

KServe starts a transformer container with ``--model_name``, ``--predictor_host`` and ``--http_port`` appended to
its arguments and sends it the traffic of the InferenceService. kserve 0.21's ``OpenAIProxyModel`` imports vLLM at
import time, so instead of leaning on it we serve the router's own aiohttp app under KServe's argument contract:

    python -m kserve_llmd.transformer [router flags] [--selector L --namespace NS] --model_name M
        --predictor_host H --http_port P

* ``server.py``: argument parsing (KServe's injected flags accepted; other unknown ``--flags`` logged and ignored),
  discovery choice (``KubernetesDiscovery`` when a label selector is given, else the predictor as one static
  endpoint), and the serve loop (SIGTERM → clean exit 0).
* ``model.py``: ``RouterModel``, a ``kserve.Model`` whose async ``predict`` forwards OpenAI payloads through a
  running router, for users who want KServe's v1/v2 protocol surface (importing it imports kserve: ~1 s).
"""
