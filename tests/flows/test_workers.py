"""Several workers on PostgreSQL, on the real stack as `make test` brings it up
(`relay stack up --postgres --workers 2`): a release whose service pipelines run as deployment
runs (`RELAY_SERVICE_RUNS=deployments`) spreads them over both workers, each worker with a
`RELAY_HOME` of its own as a separate machine would have; the ledger in PostgreSQL holds every
record once; two releases of one service deploy one after the other whichever workers run them;
a worker killed in the middle of a release leaves its run crashed, and a retry completes it once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.task_runners import ThreadPoolTaskRunner

import devstack
from deployments.automations import ensure_crash_detection
from deployments.register import register_deployments
from flows.release import release
from relay.ledger import Ledger, Outcome
from relay.settings import relay_database
from tasks.support.runs import flow_runs_under
from tests.flows.shop import CALLING, Shop, shop_repository
from tests.flows.test_release import deploy_window

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
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
    ensure_crash_detection()
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
        roots = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"release-{sha}"]))
        )
        return [run for _, run in flow_runs_under(client, [r.id for r in roots])]


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
    # A user's `relay history`, with no database setting of its own, reads the stack's.
    env = {k: v for k, v in os.environ.items() if k != "RELAY_DATABASE_URL"}
    shown = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "history", "gateway"],
        capture_output=True, text=True, timeout=120, cwd=shop.repo,
        env={**env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert shown.returncode == 0 and sha[:12] in shown.stdout, shown.stdout + shown.stderr
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


def _run_named(name: str, sha: str) -> FlowRun | None:
    found = [c for c in _children(sha) if c.name == name and c.deployment_id is not None]
    return found[0] if found else None


def test_a_worker_killed_mid_release_crashes_its_run_and_a_retry_completes_it_once(
    shop: Shop, spread: None
) -> None:
    """The machine of the worker deploying payments dies while its canary is being judged:
    the automation marks the silent run Crashed (deployments/automations.py), the release
    fails instead of waiting forever, and running it again deploys payments once."""

    def slow_canary(manifest: dict[str, Any]) -> None:
        dev = manifest["environments"]["dev"]
        dev["strategy"] = "canary"
        dev["canary_steps"] = [50, 100]
        # no load is sent: an unjudged step goes on (the retry must finish)
        dev["analysis"] = {"interval_seconds": 45, "on_inconclusive": "continue"}

    shop.edit_manifest(slow_canary)
    shop.edit("services/payments/app.py", '"""', '"""Payments, whose worker dies.\n')
    sha = shop.commit("payments, on a worker that will die")
    outcome: dict[str, object] = {}

    def ship() -> None:
        try:
            outcome["result"] = _release(shop, sha, ["payments"])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["error"] = exc

    thread = threading.Thread(target=ship)
    thread.start()
    deadline = time.monotonic() + 240
    while True:
        run = _run_named("payments-dev", sha)
        canary = run is not None and any(c.name == "canary-payments-dev" for _, c in _under(run.id))
        if canary and run is not None and run.infrastructure_pid:
            break
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(1)
    node = f"relay-{os.uname().nodename}"
    worker = run.labels["prefect.worker.name"]
    name = "worker" if worker == node else f"worker-{worker.removeprefix(node + '-')}"
    worker_pid = int(devstack.stack_paths().pidfile(name).read_text())
    flow_pid = int(run.infrastructure_pid.rsplit(":", 1)[-1])  # "host:pid" or "pid"
    for pid in (worker_pid, flow_pid):  # the machine dies: its worker and what it runs
        os.kill(pid, signal.SIGKILL)
    try:
        thread.join(timeout=300)  # three missed heartbeats of 30 s, and the automation's beat
        assert not thread.is_alive(), "the release must not wait forever for a dead worker"
        with get_client(sync_client=True) as client:
            crashed = client.read_flow_run(run.id)
        assert crashed.state is not None and crashed.state.is_crashed(), crashed.state
        assert "error" in outcome, outcome
    finally:
        devstack.up(progress=lambda _: None)  # the machine comes back: its worker restarts

    again = _release(shop, sha, ["payments"])
    assert [r.commit for r in again] == [sha]  # type: ignore[attr-defined]
    records = [
        r for r in Ledger(relay_database()).history(shop.app, "payments", "dev") if r.commit == sha
    ]
    assert [r.outcome for r in records] == [Outcome.SUCCEEDED], "deployed once, recorded once"
    payments = 8004 + OFFSETS["dev"]
    with urllib.request.urlopen(f"http://127.0.0.1:{payments}/version", timeout=5) as response:
        assert json.load(response)["version"] == sha


def _under(run_id: UUID) -> list[tuple[int, FlowRun]]:
    with get_client(sync_client=True) as client:
        return flow_runs_under(client, [run_id])
