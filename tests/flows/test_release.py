"""The release flow end to end on the real stack: git, Docker engine, registry, HAProxy and
the Prefect server. The example shop is copied into a fresh git repository under its own app
name and ports, so the test neither sees nor disturbs a running demo."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.sorting import ArtifactSort

from flows.release import release
from flows.service_pipeline import ServiceRelease
from relay.errors import ManifestError, RolledBack, StageFailed
from relay.ledger import Ledger, Outcome
from relay.registry import RegistryClient
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop"
ID = ["-c", "user.name=Test Author", "-c", "user.email=author@example.invalid"]


def version_of(result: ServiceRelease) -> str:
    with urllib.request.urlopen(f"{result.url}/version", timeout=5) as response:
        return str(json.load(response)["version"])


def by_service(results: list[ServiceRelease]) -> dict[str, ServiceRelease]:
    return {r.service: r for r in results}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(
        tmp_path_factory, "shop", {"dev": 16000, "staging": 17000, "prod": 18000}
    ) as shop:
        yield shop


@pytest.fixture(scope="module")
def first(shop: Shop) -> tuple[str, dict[str, ServiceRelease]]:
    sha = shop.commit("Initial shop")
    return sha, by_service(asyncio.run(release(str(shop.repo), sha)))


@pytest.fixture(scope="module")
def second(shop: Shop, first: object) -> tuple[str, dict[str, ServiceRelease]]:
    shop.edit("services/payments/app.py", '"""', '"""Payments, second revision.\n')
    sha = shop.commit("Change payments only")
    return sha, by_service(asyncio.run(release(str(shop.repo), sha)))


def test_every_service_serves_the_commit_it_was_built_from(
    shop: Shop, first: tuple[str, dict[str, ServiceRelease]]
) -> None:
    sha, results = first
    assert list(results) == ["inventory", "payments", "orders", "gateway"], "providers first"
    registry = os.environ["RELAY_REGISTRY"]
    with RegistryClient(registry) as client:
        for name, result in results.items():
            assert result.built
            assert version_of(result) == sha
            assert result.image.startswith(f"{registry}/{shop.app}/{name}@sha256:")
            assert client.digest(f"{shop.app}/{name}", sha) == result.image.split("@")[1]


def test_containers_run_by_digest_with_provenance_labels(
    shop: Shop, first: tuple[str, dict[str, ServiceRelease]]
) -> None:
    sha, results = first
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        containers = client.containers.list(filters={"label": f"relay.app={shop.app}"})
        assert len(containers) == 4
        for container in containers:
            result = results[container.labels["relay.service"]]
            assert container.attrs["Config"]["Image"] == result.image
            assert container.labels["relay.commit"] == sha
            assert container.labels["relay.tree"] == result.tree
            assert container.attrs["HostConfig"]["NetworkMode"] == "host"


def test_a_request_crosses_all_services(first: tuple[str, dict[str, ServiceRelease]]) -> None:
    _, results = first
    body = json.dumps({"sku": "widget", "quantity": 1, "card": "4242424242424242"}).encode()
    request = urllib.request.Request(
        f"{results['gateway'].url}/api/orders",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
        order = json.load(response)
    assert order["sku"] == "widget" and order["payment_id"]


def test_the_run_is_visible_in_prefect(
    shop: Shop, first: tuple[str, dict[str, ServiceRelease]]
) -> None:
    sha, results = first
    keys = [
        f"{shop.app}-gateway-dev-summary",
        f"{shop.app}-payments-unit-tests",
        f"{shop.app}-environments",
        f"{shop.app}-release-run",
    ]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
            sort=ArtifactSort.CREATED_DESC,
        )
    found: dict[str | None, Any] = {}
    for artifact in artifacts:  # each key's newest version
        found.setdefault(artifact.key, artifact)
    assert set(found) == set(keys)
    summary = str(found[keys[0]].data)
    assert sha in summary and results["gateway"].image in summary
    rows = found[keys[1]].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert rows and all(row["outcome"] == "passed" for row in rows)
    where = found[keys[2]].data
    where = json.loads(where) if isinstance(where, str) else where
    running = {(row["environment"], row["service"]): row["digest"] for row in where}
    assert running == {
        ("dev", name): result.image.split("@")[1] for name, result in results.items()
    }
    # The release run's summary links each service's build and deployment run.
    run_summary = str(found[keys[3]].data)
    assert f"at {sha[:12]}" in run_summary and ": Completed" in run_summary
    for name in results:
        for run in (f"build-{name}", f"{name}-dev"):
            assert re.search(
                rf"\[{run}\]\(http://[^)]+/runs/flow-run/[0-9a-f-]{{36}}\)", run_summary
            )


def test_only_the_changed_service_is_rebuilt(
    shop: Shop,
    first: tuple[str, dict[str, ServiceRelease]],
    second: tuple[str, dict[str, ServiceRelease]],
) -> None:
    sha1, before = first
    sha2, after = second
    assert after["payments"].built and after["payments"].image != before["payments"].image
    assert version_of(after["payments"]) == sha2
    for name in ("inventory", "orders", "gateway"):
        assert not after[name].built, f"{name} did not change and must not be rebuilt"
        assert after[name].image == before[name].image
        assert not after[name].changed, f"{name} already served this digest"
        assert version_of(after[name]) == sha1, "still the build of the first commit"
    with RegistryClient(os.environ["RELAY_REGISTRY"]) as client:
        digest = client.digest(f"{shop.app}/gateway", sha2)
    assert digest == before["gateway"].image.split("@")[1], "the new commit tags the same image"


def test_failing_unit_tests_stop_the_pipeline_before_an_image_exists(
    shop: Shop, second: tuple[str, dict[str, ServiceRelease]]
) -> None:
    sha2, after = second
    test_file = shop.repo / "services/payments/tests/unit/test_broken.py"
    test_file.write_text("def test_fails():\n    assert 1 + 1 == 3\n")
    sha3 = shop.commit("Break a payments unit test")
    try:
        with pytest.raises(StageFailed, match="payments: unit tests failed"):
            asyncio.run(release(str(shop.repo), sha3, services=["payments"]))
        assert version_of(after["payments"]) == sha2
        with RegistryClient(os.environ["RELAY_REGISTRY"]) as client:
            assert client.digest(f"{shop.app}/payments", sha3) is None
    finally:
        test_file.unlink()
        shop.commit("Fix the payments unit tests")


def test_a_version_that_never_gets_healthy_leaves_the_old_one_serving(
    shop: Shop,
    first: tuple[str, dict[str, ServiceRelease]],
    second: tuple[str, dict[str, ServiceRelease]],
) -> None:
    sha1, _ = first
    _, after = second
    dockerfile = "services/inventory/Dockerfile"
    original = (shop.repo / dockerfile).read_text()
    shop.edit(
        dockerfile, 'CMD ["python3", "/app/app.py"]', 'CMD ["python3", "-c", "raise SystemExit(3)"]'
    )
    sha = shop.commit("Ship an inventory that cannot start")
    try:
        with pytest.raises(StageFailed, match="previous version keeps serving"):
            asyncio.run(release(str(shop.repo), sha, services=["inventory"]))
        assert version_of(after["inventory"]) == sha1, "the old inventory still answers"
        with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
            live = client.containers.list(
                all=True, filters={"label": [f"relay.app={shop.app}", "relay.service=inventory"]}
            )
        assert [c.labels["relay.image"] for c in live] == [after["inventory"].image]
        assert live[0].status == "running", "the broken container was removed, the old one runs"
    finally:
        (shop.repo / dockerfile).write_text(original)
        shop.commit("Restore inventory")


def test_a_bad_manifest_stops_before_anything_is_built(
    shop: Shop, second: tuple[str, dict[str, ServiceRelease]]
) -> None:
    shop.edit("relay.yaml", "- payments", "- paymnts")
    sha = shop.commit("Typo in depends_on")
    try:
        with pytest.raises(ManifestError, match=r"depends_on\[1\]: unknown service 'paymnts'"):
            asyncio.run(release(str(shop.repo), sha))
        with RegistryClient(os.environ["RELAY_REGISTRY"]) as client:
            for name in ("inventory", "payments", "orders", "gateway"):
                assert client.digest(f"{shop.app}/{name}", sha) is None
    finally:
        shop.edit("relay.yaml", "- paymnts", "- payments")
        shop.commit("Fix the typo")


def test_failing_integration_tests_put_the_previous_version_back(
    shop: Shop, second: tuple[str, dict[str, ServiceRelease]]
) -> None:
    sha2, after = second
    broken = shop.repo / "services/payments/tests/integration/test_broken.py"
    broken.write_text("def test_fails_against_dev():\n    assert False, 'broken on purpose'\n")
    sha = shop.commit("Ship payments with a failing integration test")
    try:
        with pytest.raises(RolledBack, match="put back: payments"):
            asyncio.run(release(str(shop.repo), sha, services=["payments"]))
        assert version_of(after["payments"]) == sha2, "the previous payments serves again"
        last = Ledger(relay_database()).history(shop.app, "payments", "dev", limit=1)[0]
        assert last.outcome == Outcome.ROLLED_BACK and "integration tests failed" in last.reason
        current = Ledger(relay_database()).current(shop.app, "dev", "payments")
        assert current is not None and current.image == after["payments"].image
    finally:
        broken.unlink()
        shop.commit("Remove the failing integration test")


def test_two_deployments_of_one_service_wait_for_each_other(
    shop: Shop, second: tuple[str, dict[str, ServiceRelease]]
) -> None:
    shop.edit("services/inventory/app.py", '"""', '"""Inventory, concurrent A.\n')
    a = shop.commit("Inventory A")
    shop.edit("services/inventory/app.py", "concurrent A", "concurrent B")
    b = shop.commit("Inventory B")
    outcomes: dict[str, object] = {}

    def ship(sha: str) -> None:
        try:
            outcomes[sha] = asyncio.run(release(str(shop.repo), sha, services=["inventory"]))
        except BaseException as exc:
            outcomes[sha] = exc

    threads = [threading.Thread(target=ship, args=(sha,)) for sha in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert all(isinstance(o, list) for o in outcomes.values()), outcomes
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        live = client.containers.list(
            filters={"label": [f"relay.app={shop.app}", "relay.env=dev", "relay.service=inventory"]}
        )
    assert len(live) == 1, "one version serves; neither deploy removed the other's container"
    current = Ledger(relay_database()).current(shop.app, "dev", "inventory")
    assert current is not None and live[0].labels["relay.image"] == current.image
    history = Ledger(relay_database()).history(shop.app, "inventory", "dev", limit=2)
    assert {r.commit for r in history} == {a, b}
    assert all(r.outcome == Outcome.SUCCEEDED for r in history)
    first, second = sorted(deploy_window(r.flow_run_id) for r in history)
    assert first[1] <= second[0], "the second deploy started only after the first was tested"


def deploy_window(flow_run_id: str | None) -> tuple[datetime, datetime]:
    """From the new version's start to its integration tests' end, as Prefect recorded it."""
    assert flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
        for child in children:
            runs += client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[child.id]))
            )
    starts = [r.start_time for r in runs if r.name.startswith("start-new-version") and r.start_time]
    ends = [r.end_time for r in runs if r.name.startswith("run-integration-tests") and r.end_time]
    assert starts and ends, [r.name for r in runs]
    return min(starts), max(ends)
