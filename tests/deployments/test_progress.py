"""Live progress against the real Prefect server: a step keeps the service it ran for after
Prefect rolls back the task that held it.

A service's deployment runs as a subflow inside a task of the release (`ship-service`). When
that task fails, Prefect rolls back its transaction: it records every step of the subflow as
`RolledBack` from the release's own context, which files those task runs under the release.
Progress must still say which service a step was (`inventory dev: abort-rollout`)."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client

from deployments.progress import _runs
from relay.progress import snapshot

pytestmark = pytest.mark.stack


@task(name="abort-rollout")
def abort_rollout() -> str:
    return "the previous version serves"


@flow(name="deploy-service", flow_run_name="{service}-{environment}")
def deploy_service(service: str, environment: str) -> str:
    return abort_rollout()


@task(name="ship-service")
def ship_service(service: str) -> None:
    deploy_service(service, "dev")
    raise RuntimeError(f"{service}: rolled back")


@flow(name="release")
def release() -> None:
    ship_service("inventory")


def test_a_rolled_back_step_still_belongs_to_its_service() -> None:
    name = f"release-{uuid.uuid4().hex[:8]}"
    state = release.with_options(flow_run_name=name)(return_state=True)
    assert state.is_failed()
    with get_client(sync_client=True) as client:
        runs = _runs(client, name, {})
    [step] = [r for r in runs if r.kind == "task" and r.name.startswith("abort-rollout")]
    assert step.state == "RolledBack", "Prefect rolled the step back (what this test is about)"
    [service_run] = [r for r in runs if r.kind == "flow" and r.name == "inventory-dev"]
    assert step.parent == service_run.id
    steps = snapshot(runs).steps
    assert (steps[step.id].service, steps[step.id].environment) == ("inventory", "dev")
