"""Prefect flows: orchestration only; each reads like the pipeline it runs."""
