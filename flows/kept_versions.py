"""Stopping the previous versions blue/green kept for an instant switch back, once their
window (`keep_previous_seconds`) has closed: a scheduled run (`stop-kept-versions` in
prefect.yaml, every minute) does it, so no deploy holds its lock while it waits. Docker's kept
containers are removed; Kubernetes' kept colors are scaled to 0."""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from tasks.deploy import stop_expired_versions


@flow(name="stop-kept-versions")
async def stop_kept_versions() -> list[str]:
    """Stop every kept previous version whose window has closed; their names."""
    with one_client_for_tasks():
        return stop_expired_versions(DockerHost())
