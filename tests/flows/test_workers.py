"""Several workers on PostgreSQL, on the real stack as `make test` brings it up
(`relay stack up --postgres --workers 2`): a release whose service pipelines run as deployment
runs (`RELAY_SERVICE_RUNS=deployments`) spreads them over both workers, each worker with a
`RELAY_HOME` of its own as a separate machine would have; the ledger in PostgreSQL holds every
record once; two releases of one service deploy one after the other whichever workers run them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.task_runners import ThreadPoolTaskRunner

import devstack
from deployments.register import register_deployments
from flows.release import release
from relay.ledger import Ledger, Outcome
from relay.settings import relay_database
from tasks.support.runs import flow_runs_under
from tests.flows.shop import CALLING, Shop, shop_repository
from tests.flows.test_release import deploy_window

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 15500}
SERVICES = (*CALLING, "catalog")  # five builds at once: more than one worker takes (--limit 4)


@pytest.fixture(scope="module", autouse=True)
def two_workers() -> None:
    mode = devstack.load_mode(devstack.stack_paths())
    if not (mode.postgres and mode.workers >= 2):
        pytest.fail(
            f"the stack runs with {mode.describe()}; these tests need "
            "`relay stack up --postgres --workers 2` (what `make test` brings up)"
        )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    register_deployments("", names=["build-service", "deploy-service"])
    with shop_repository(tmp_path_factory, "workers", OFFSETS, services=SERVICES) as shop:
        yield shop


@pytest.fixture
def spread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_SERVICE_RUNS", "deployments")


def _release(shop: Shop, sha: str, services: list[str] | None = None) -> list[object]:
    wide = release.with_options(task_runner=ThreadPoolTaskRunner(max_workers=len(SERVICES)))
    return list(asyncio.run(wide(str(shop.repo), sha, services=services)))


def _children(sha: str) -> list[FlowRun]:
    """The runs under the release of `sha` (its name: release-<sha>)."""
    with get_client(sync_client=True) as client:
        [root] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"release-{sha}"]))
        )
        return [run for _, run in flow_runs_under(client, [root.id])]


def test_a_release_spreads_its_service_pipelines_over_both_workers(
    shop: Shop, spread: None
) -> None:
    sha = shop.commit("the fleet, on two workers")
    results = _release(shop, sha)

    assert {r.service for r in results} == set(SERVICES)  # type: ignore[attr-defined]
    children = [r for r in _children(sha) if r.deployment_id is not None]
    assert sorted(r.name for r in children) == sorted(
        [f"build-{s}" for s in SERVICES] + [f"{s}-dev" for s in SERVICES]
    ), "each service's build and deployment is a deployment run under the release"
    assert all(r.state is not None and r.state.is_completed() for r in children)
    ran_on = {r.labels.get("prefect.worker.name") for r in children}
    assert len(ran_on) == 2 and None not in ran_on, f"the service runs ran on {ran_on}"

    records = Ledger(relay_database()).history(shop.app, limit=100)
    assert sorted((r.service, r.outcome) for r in records) == sorted(
        (s, Outcome.SUCCEEDED) for s in SERVICES
    ), "one ledger in PostgreSQL, every record once"
    gateway = 8001 + OFFSETS["dev"]
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/version", timeout=5) as response:
        assert json.load(response)["version"] == sha


def test_two_releases_of_one_service_on_the_workers_deploy_one_after_the_other(
    shop: Shop, spread: None
) -> None:
    shop.edit("services/inventory/app.py", '"""', '"""Inventory, from worker A.\n')
    a = shop.commit("inventory A")
    shop.edit("services/inventory/app.py", "from worker A", "from worker B")
    b = shop.commit("inventory B")
    outcomes: dict[str, object] = {}

    def ship(sha: str) -> None:
        try:
            outcomes[sha] = _release(shop, sha, ["inventory"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes[sha] = exc

    threads = [threading.Thread(target=ship, args=(sha,)) for sha in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=400)
    assert all(isinstance(o, list) for o in outcomes.values()), outcomes

    history = Ledger(relay_database()).history(shop.app, "inventory", "dev", limit=2)
    assert {r.commit for r in history} == {a, b}
    assert all(r.outcome == Outcome.SUCCEEDED for r in history)
    deploys = [
        next(c for c in _children(sha) if c.name == "inventory-dev" and c.deployment_id)
        for sha in (a, b)
    ]
    assert {str(d.id) for d in deploys} == {r.flow_run_id for r in history}
    first, second = sorted(deploy_window(str(UUID(str(d.id)))) for d in deploys)
    assert first[1] <= second[0], "the second deploy started only after the first was tested"
