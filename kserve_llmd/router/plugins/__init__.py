"""Scheduler plugins, one per module. Registration happens in ``kserve_llmd/router/registry.py`` only."""
