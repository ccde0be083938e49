"""Prefect tasks: one module per stage group, each task a thin wrapper over `relay/`.

Tasks add what Prefect is for (retries, logs, artifacts) and nothing else. Stages have side
effects, so none is cached by Prefect: Relay's own content addressing (tree hash → image in the
registry) decides what is skipped.
"""
