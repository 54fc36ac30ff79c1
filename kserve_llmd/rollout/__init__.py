"""Tested library code behind the Kubeflow pipeline components (``pipelines/``): deploy, benchmark, canary, teardown.

    steps.py      the functions the components call (primitive params in, JSON/files out)
    spec.py       DeploySpec          state.py   DeploymentState (crosses step boundaries as JSON)
    backends.py   Backend protocol + registry; traffic updates
    local.py      the local target: thin layer over sdk.LocalDeployment (processes via sdk/processes.py)
    cluster.py    the cluster target: thin layer over sdk.LLMDeployment
    bench.py      scenario → headline metrics     metrics.py  metric names and directions
    slo.py        SLO / regression grammar        decision.py promote | rollback with evidence
    canary.py     the canary flow, promote, rollback          report.py  Markdown reports
"""
