"""Platforms: where services run (`docker` here; `kubernetes` for clusters)."""
