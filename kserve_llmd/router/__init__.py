"""The cache-aware, load-aware router (see README.md in this folder)."""
