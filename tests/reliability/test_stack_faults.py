"""Faults in the stack's own components, injected into a private stack (never the shared one).

One shop (only `payments`, a leaf, so each step is a single service) walks through the faults
in order, each test starting from the state the previous one left and checking that nothing
was lost and the system ended in a known state:

1. the registry stops during the first push: retries, then a clear failure; nothing is
   deployed or recorded as deployed; once the registry is back, a re-run deploys it;
2. the worker (with the flow-run process it started) is killed in the middle of a deploy:
   a re-run converges, with one container serving, and one ledger outcome for that image;
3. the Prefect server restarts while a production promotion waits for approval: the approval
   given afterwards still resumes it, and production serves the approved image;
4. dockerd restarts: the containers come back (restart policy), and the docker platform's view,
   read again from the container labels, is the one from before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from relay.ledger import Ledger, Outcome
from tests.reliability.conftest import PRIVATE_OFFSETS, PrivateShop, private_shop
from tests.reliability.privatestack import PrivateStack, answer

pytestmark = pytest.mark.stack

PAYMENTS = 8004


def only_payments(manifest: dict[str, Any]) -> None:
    """A one-service shop: every step deploys exactly one thing, and nothing needs neighbours."""
    manifest["services"] = {"payments": manifest["services"]["payments"]}
    manifest.pop("e2e_tests", None)
    prod = manifest["environments"]["prod"]
    prod["strategy"] = "rolling"
    prod["approval"] = {"required": True, "timeout_seconds": 300, "approvers": ["alice"]}


@pytest.fixture(scope="module")
def shop(
    private_stack: PrivateStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateShop]:
    with private_shop(private_stack, tmp_path_factory, "rrstack", only_payments) as shop:
        yield shop


def url(environment: str) -> str:
    return f"http://127.0.0.1:{PAYMENTS + PRIVATE_OFFSETS[environment]}"


def served_version(environment: str) -> str:
    with urllib.request.urlopen(f"{url(environment)}/version", timeout=5) as response:
        return str(json.load(response)["version"])


def ledger(shop: PrivateShop) -> Ledger:
    return Ledger(shop.stack.home / "ledger.db")


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_registry_stopped_during_a_push_fails_clearly_and_deploys_nothing(
    shop: PrivateShop,
) -> None:
    v1 = shop.commit("payments v1")
    tag = f"{shop.stack.registry}/{shop.app}/payments:{v1}"
    proc = shop.stack.spawn_driver("pipeline", str(shop.repo), v1, "payments", "dev")
    with closing(shop.docker()) as client:

        def built() -> bool:
            return any(tag in image.tags for image in client.images.list())

        # The first push to a fresh registry uploads the 45 MB base layer: about a second.
        wait_for("the image to be built", built, timeout=180)
    shop.stack.stop("registry")
    try:
        started = time.monotonic()
        outcome = answer(proc, timeout=180)
        failed_after = time.monotonic() - started
    finally:
        shop.stack.up()  # the registry comes back for the next tests

    assert not outcome["ok"], "the pipeline must fail while the registry is down"
    assert f"push of {tag}" in outcome["message"], outcome["message"]
    assert "Retry" in outcome["stderr"] or failed_after > 10, "the push must be retried"
    # nothing half-deployed: no container, no ledger record, no image in the registry
    with closing(shop.docker()) as client:
        assert shop.platform(client, "dev").running(shop.app, "dev", "payments") == []
    assert ledger(shop).history(shop.app, "payments", "dev") == []
    tags = httpx.get(f"http://{shop.stack.registry}/v2/{shop.app}/payments/tags/list", timeout=5)
    assert tags.status_code == 404 or not tags.json().get("tags"), tags.text

    again = shop.stack.driver("pipeline", str(shop.repo), v1, "payments", "dev", timeout=180)
    assert again["ok"], again.get("message")
    assert served_version("dev") == v1
    [record] = ledger(shop).history(shop.app, "payments", "dev")
    assert record.outcome == Outcome.SUCCEEDED and record.commit == v1


def _api(shop: PrivateShop) -> str:
    return shop.stack.env["PREFECT_API_URL"]


def test_worker_killed_mid_deploy_rerun_converges(shop: PrivateShop) -> None:
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    v2 = shop.commit("payments v2")
    pool = f"rr-kill-{uuid.uuid4().hex[:6]}"
    made = shop.stack.driver("deployment", pool, "kill-test", timeout=120)
    assert made["ok"], made.get("message")
    created = httpx.post(
        f"{_api(shop)}/deployments/{made['result']}/create_flow_run",
        json={
            "parameters": {
                "repository": str(shop.repo),
                "commit": v2,
                "service": "payments",
                "environment": "dev",
            }
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", pool],
        env={**shop.stack.env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its flow-run process is in its group: killed with it
    )
    try:
        with closing(shop.docker()) as client:
            platform = shop.platform(client, "dev")

            def v2_started() -> bool:
                return any(r.commit == v2 for r in platform.running(shop.app, "dev", "payments"))

            wait_for("the v2 container of the worker's run", v2_started, timeout=120, every=0.1)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert served_version("dev") != v2, "killed before the switch: v1 still serves"

    started = time.monotonic()
    rerun = shop.stack.driver("pipeline", str(shop.repo), v2, "payments", "dev", timeout=240)
    assert rerun["ok"], rerun.get("message")
    assert served_version("dev") == v2
    with closing(shop.docker()) as client:
        containers = shop.platform(client, "dev").running(shop.app, "dev", "payments")
    assert [(c.commit, c.status) for c in containers] == [(v2, "running")], containers
    records = [r for r in ledger(shop).history(shop.app, "payments", "dev") if r.commit == v2]
    assert [r.outcome for r in records] == [Outcome.SUCCEEDED], records
    # the dead run's deploy lock is released by its lease, not after Prefect's default 300 s
    assert time.monotonic() - started < 150


def paused_runs(shop: PrivateShop) -> list[str]:
    try:
        response = httpx.post(
            f"{_api(shop)}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}},
            timeout=10,
        )
    except httpx.HTTPError:
        return []
    return [run["id"] for run in response.json()] if response.status_code == 200 else []


def test_prefect_server_restart_while_waiting_for_approval(shop: PrivateShop) -> None:
    v2 = ledger(shop).current(shop.app, "dev", "payments")
    assert v2 is not None and v2.outcome == Outcome.SUCCEEDED
    # v2 reached dev through the service pipeline alone; promotions move releases, so make its
    # release (the image is reused by its key, and dev already runs it: nothing is redeployed).
    made = shop.stack.driver("release", str(shop.repo), v2.commit, "payments", "dev")
    assert made["ok"], made.get("message")
    staged = shop.stack.driver("promote", str(shop.repo), v2.commit, "staging", "payments")
    assert staged["ok"], staged.get("message")
    proc = shop.stack.spawn_driver("promote", str(shop.repo), v2.commit, "prod", "payments")
    try:
        [run_id] = wait_for("the approval form", lambda: paused_runs(shop), timeout=120, every=0.5)
        took = shop.stack.stop("prefect")
        shop.stack.up()
        assert paused_runs(shop) == [run_id], "the paused run survives the restart"
        approved = shop.stack.driver("approve", run_id, "alice", timeout=120)
        assert approved["ok"], approved.get("message")
        outcome = answer(proc, timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert outcome["ok"], f"{outcome.get('message')} (server stopped in {took:.1f} s)"
    assert served_version("prod") == v2.commit
    record = ledger(shop).current(shop.app, "prod", "payments")
    assert record is not None and record.outcome == Outcome.SUCCEEDED
    assert record.approver == "alice" and record.image == v2.image


def test_dockerd_restart_platform_rebuilds_its_view_from_labels(shop: PrivateShop) -> None:
    def view() -> dict[str, tuple[str, str, str]]:
        with closing(shop.docker()) as client:
            seen = {}
            for environment in ("dev", "staging", "prod"):
                active = shop.platform(client, environment).active(
                    shop.app, environment, "payments"
                )
                assert active is not None, environment
                seen[environment] = (active.slot, active.digest, active.status)
            return seen

    before = view()
    shop.stack.stop("dockerd")
    shop.stack.up()

    def serving_again() -> bool:
        try:
            return all(served_version(e) for e in before)
        except OSError:
            return False

    wait_for("the services to serve again", serving_again, timeout=60, every=0.2)
    assert view() == before
    with closing(shop.docker()) as client:
        for environment in before:
            containers = shop.platform(client, environment).running(
                shop.app, environment, "payments"
            )
            assert len(containers) == 1, containers
    # a re-deploy of what runs is recognised from the labels: nothing new is started
    again = shop.stack.driver(
        "pipeline", str(shop.repo), shop.git("rev-parse", "HEAD"), "payments", "dev"
    )
    assert again["ok"] and again["result"]["changed"] is False, again
