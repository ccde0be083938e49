"""Prefect flows: orchestration only; each reads like the pipeline it runs.

Importing them sets up trace export first (`tasks.tracing`), so every run span is exported.
"""

from tasks.tracing import configure_tracing

configure_tracing()
