"""Test doubles shipped with the package (used by the test suite and by ``examples/notebook_cluster.py``).

``KubeApiDouble`` (``kube_double.py``): a Kubernetes API server double over real loopback HTTP, since no API server
can run where the tests run. Nothing here is imported by the runtime code.
"""
