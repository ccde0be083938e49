"""Service pipelines as runs of their own deployments, so that any worker of the pool takes them.

With ``RELAY_SERVICE_RUNS=deployments``, a release starts each service's build and deployment
as a run of the `build-service` and `deploy-service` deployments (prefect.yaml), a child run of
the release, instead of running them in its own process: a fleet's work spreads over every
worker of the pool. The deploy locks are Prefect global concurrency limits, so two releases of
one service deploy one after the other whichever workers run them.

What a child run returns reaches the release through Prefect's result storage, which every
worker and the release must share: a directory on one machine (``PREFECT_LOCAL_STORAGE_PATH``,
as the local stack sets it), an S3 bucket block beyond (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``).
A child's failure is raised in the release as the child raised it.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from relay.errors import TerminalError

SERVICE_RUNS = "RELAY_SERVICE_RUNS"
POLL_SECONDS = 1.0


def spread() -> bool:
    """Whether service pipelines run as deployment runs (any worker) rather than in-process."""
    value = os.environ.get(SERVICE_RUNS, "in-process").strip() or "in-process"
    if value not in {"in-process", "deployments"}:
        raise ValueError(f"{SERVICE_RUNS}={value!r}: write in-process (default) or deployments")
    return value == "deployments"


def run_on_any_worker(deployment: str, name: str, parameters: dict[str, Any]) -> Any:
    """Run `deployment` as a child run named `name`, wait for it, and return what it returned
    (or raise what it raised)."""
    try:
        run = run_deployment(
            deployment,
            parameters=parameters,
            flow_run_name=name,
            as_subflow=True,
            timeout=None,
            poll_interval=POLL_SECONDS,
        )
    except ObjectNotFound:
        raise TerminalError(
            f"{SERVICE_RUNS}=deployments, but the deployment {deployment} does not exist on the "
            "Prefect server; register the deployments with `relay deploy`, or unset "
            f"{SERVICE_RUNS} to run service pipelines in the release's own process"
        ) from None
    assert run.state is not None
    return run.state.result(raise_on_failure=True)
