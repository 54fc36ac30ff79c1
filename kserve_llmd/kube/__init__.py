"""Kubernetes side of kserve-llmd: typed manifest builders (``builders/``), strict validation against the real CRD
schemas (``crds.py``), rendering (``render.py``), the checked-in runtimes and kustomize trees, and cluster
operations and discovery. Nothing heavy is imported here; see README.md for the map."""
