"""`relay.*` labels on the current flow run: what a run resolved, kept where Prefect keeps runs.

A release's parameters say what it was asked (`commit: main`); its labels say what that was
(`relay.commit: 1a2b…`, `relay.release: 5a20adff…`). `relay retry` reruns the exact commit
from them, and the Prefect UI filters runs by them.
"""

from __future__ import annotations

import httpx
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger

PREFIX = "relay."


def label_run(**labels: str) -> None:
    """Add `relay.<name>` labels (underscores become dots) to this flow run; outside a flow run,
    nothing. Labels are a convenience: a server that refuses them does not stop the run."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    values = {f"{PREFIX}{name.replace('_', '.')}": value for name, value in labels.items()}
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(context.flow_run.id, values)
    except httpx.HTTPError as exc:  # PrefectHTTPStatusError is one
        get_run_logger().warning("labels %s not set: %s", values, exc)
