"""Rollback: put the last known-good version of a service back, now.

It skips smoke tests, canary steps and analysis on purpose: the target already served this
environment successfully, and the point is seconds, not caution. A whole environment goes back
to its previous release with `flows.rollback_environment`.
"""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from flows.deploy import Attempt, put_in
from relay.ledger import Ledger
from relay.platforms.docker import DeployResult
from relay.registry import ImageRef
from relay.rollbacks import service_target
from relay.settings import relay_database
from tasks.source import checkout_commit, read_manifest
from tasks.support.logs import SHIP_LOGS
from tasks.support.notify import NOTIFY_ON_FAILURE, with_hooks


@flow(
    name="rollback",
    flow_run_name="rollback-{service}-{environment}",
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE),
)
async def rollback(
    repository: str,
    service: str,
    environment: str,
    ref: str = "HEAD",
    manifest_file: str = "relay.yaml",
) -> DeployResult:
    """Deploy the previous good version of `service` in `environment` (rolling, no analysis)."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, ref)
        manifest = read_manifest(checkout, manifest_file)
        manifest.check_environment(environment)
        ledger = Ledger(relay_database())
        target = service_target(
            service,
            environment,
            ledger.current(manifest.app, environment, service),
            ledger.previous_good(manifest.app, environment, service),
        )
        attempt = Attempt(
            app=manifest.app,
            service=service,
            environment=environment,
            image=ImageRef.parse(target.image),
            commit=target.commit,
            tree=target.tree,
            strategy="rollback",
            release=target.release,
            comment=f"rollback to the version recorded at {target.ended_at:%Y-%m-%d %H:%M} UTC",
            cloudwatch=manifest.cloudwatch,
        )
        return await put_in(DockerHost(), manifest, attempt)
