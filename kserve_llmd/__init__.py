"""kserve-llmd: llm-d-style distributed LLM inference for KServe and Kubeflow.

Importing this package has no side effects: no argv parsing, no environment reads, no sockets.
"""

__version__ = "0.1.0"
