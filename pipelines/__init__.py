"""Kubeflow Pipelines for kserve-llmd: components (one per module) and the rollout pipeline (see README.md)."""
