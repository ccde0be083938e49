"""Prefect flows: orchestration only; each reads like the pipeline it runs.

Importing them sets up trace export first (`tasks.support.tracing`), so every run span is exported.
"""

from tasks.support.tracing import configure_tracing

configure_tracing()
