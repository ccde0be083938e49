"""prefect.yaml registered on the real server, and a deployment run through the real worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.deployments import run_deployment

from deployments.register import register_deployments
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

NAMES = {
    "release",
    "promote",
    "rollback",
    "rollback-environment",
    "service-pipeline",
    "build-service",
    "deploy-service",
    "nightly-e2e",
    "stop-kept-versions",
}
KEPT = "stop-kept-versions/stop-kept-versions"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A shop that is deployed nowhere: every nightly check must fail, and say so."""
    offsets = {"dev": 10500, "staging": 12500, "prod": 14500}  # nothing listens there
    with shop_repository(tmp_path_factory, "nightly", offsets) as shop:
        shop.commit("Nightly subject")
        yield shop


@pytest.fixture(scope="module")
def registered(shop: Shop) -> Iterator[None]:
    with get_client(sync_client=True) as client:
        try:
            before = client.read_deployment_by_name("nightly-e2e/nightly-e2e").parameters
        except Exception:
            before = {}
    register_deployments(str(shop.repo), "30 3 * * *")
    yield
    if before.get("repository"):  # leave the demo's nightly run pointing where it did
        register_deployments(str(before["repository"]))
    with get_client(sync_client=True) as client:
        # Its minute-by-minute runs would only add load to the rest of the session; `relay
        # deploy` (make demo) registers it active again.
        client.pause_deployment(client.read_deployment_by_name(KEPT).id)


def test_every_deployment_is_registered_with_the_nightly_schedule(registered: None) -> None:
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert set(deployments) >= NAMES
    nightly = deployments["nightly-e2e"]
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] == [
        ("30 3 * * *", "UTC", True)
    ]
    assert all(deployments[n].work_pool_name == "relay" for n in NAMES)
    kept = deployments["stop-kept-versions"].schedules
    assert [(s.schedule.interval.total_seconds(), s.active) for s in kept] == [(60, True)]
    workdir = nightly.pull_steps[0]["prefect.deployments.steps.set_working_directory"]
    assert Path(workdir["directory"]) == Path(__file__).resolve().parents[2]


def test_a_manual_nightly_run_goes_through_the_worker_and_reports(
    registered: None, shop: Shop
) -> None:
    started = time.monotonic()
    run = run_deployment("nightly-e2e/nightly-e2e", timeout=240, poll_interval=1)
    assert time.monotonic() - started < 240
    assert run.state is not None and run.state.is_failed(), "nothing of this shop is deployed"
    assert "nightly checks of" in (run.state.message or "")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{shop.app}-nightly-e2e"]))
        )
    assert [a.flow_run_id for a in artifacts] == [run.id]
    rows = artifacts[0].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    checks = {(r["check"], r["service"]): r["outcome"] for r in rows}
    assert checks[("end-to-end tests", "(all)")] == "failed"
    assert all(checks[("health", s)] == "failed" for s in ("gateway", "payments"))
