"""Faults and races in a release on the shared stack (only this module's own app and ports).

- A canary container killed in the middle of its analysis: the step fails (the canary's health
  check, since HAProxy hides a dead server's requests from its counters), traffic goes back to
  the stable version, which serves every request (HAProxy sends the GETs that were inside the
  killed process again, to stable); the ledger says rolled back.
- Two releases of the same service to the same environment started together: both are
  recorded, they deploy one after the other (never three containers at once), and the digest
  of the one that finished last is what serves.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import docker
import pytest

from flows.service_pipeline import service_pipeline
from relay.ledger import Ledger, Outcome
from relay.platforms.docker import DockerPlatform
from relay.settings import relay_database, relay_home
from relay.traffic import make_router
from tests.echo import Load
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

# Reserved for this suite's shop on the shared stack: ports 19751-21954, none used elsewhere.
OFFSETS = {"dev": 11750, "staging": 12750, "prod": 13750}
PAYMENTS = 8004


def canary_dev(manifest: dict[str, Any]) -> None:
    manifest["services"] = {"payments": manifest["services"]["payments"]}
    manifest.pop("e2e_tests", None)
    manifest["environments"]["dev"].update(
        strategy="canary",
        canary_steps=[50, 100],
        analysis={
            "interval_seconds": 6,
            "min_requests": 5,
            "max_error_rate": 0.05,
            "max_response_ms": 1000,
            "on_inconclusive": "fail",
        },
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "rrrel", OFFSETS) as shop:
        shop.edit_manifest(canary_dev)
        yield shop


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    from os import environ

    with closing(docker.DockerClient(base_url=environ["DOCKER_HOST"], timeout=60)) as c:
        yield c


def platform(client: docker.DockerClient, shop: Shop, environment: str) -> DockerPlatform:
    return DockerPlatform(
        client, make_router("haproxy", name=f"{shop.app}-{environment}", home=relay_home())
    )


def url(environment: str) -> str:
    return f"http://127.0.0.1:{PAYMENTS + OFFSETS[environment]}"


def served_version(environment: str) -> str:
    with urllib.request.urlopen(f"{url(environment)}/version", timeout=5) as response:
        return str(json.load(response)["version"])


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # judged by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_canary_killed_mid_analysis_rolls_back_and_stable_serves_throughout(
    shop: Shop, client: docker.DockerClient
) -> None:
    v1 = shop.commit("payments v1")
    asyncio.run(service_pipeline(str(shop.repo), v1, "payments", "dev"))
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    v2 = shop.commit("payments v2")
    dev = platform(client, shop, "dev")
    with Load(f"{url('dev')}/version", max_seconds=150) as load:
        thread, outcome = in_background(
            lambda: asyncio.run(service_pipeline(str(shop.repo), v2, "payments", "dev"))
        )

        def canary_in_analysis() -> Any:
            if 50 not in dev.router.weights("payments").values():
                return None
            canary = [r for r in dev.running(shop.app, "dev", "payments") if r.commit == v2]
            return canary[0] if canary else None

        canary = wait_for("the canary at 50%", canary_in_analysis, timeout=120)
        load.wait_for_more(10)
        killed_at = time.monotonic()
        client.containers.get(canary.container_id).kill()
        thread.join(timeout=120)
        assert not thread.is_alive(), "the pipeline must end"
        load.wait_for_more(20)

    assert "error" in outcome, "a killed canary must not be promoted"
    assert served_version("dev") == v1
    assert load.transport_errors == [], load.transport_errors[:3]
    # The load's GETs that were inside the canary when it died are sent again to stable by
    # HAProxy (idempotent only): clients see no error at all.
    errors = [(round(at - killed_at, 2), status) for at, _, status in load.log if status != 200]
    assert errors == [], errors
    after = [version for at, version, _ in load.log if at > killed_at + 1]
    assert after and set(after[-20:]) == {v1}
    record = Ledger(relay_database()).current(shop.app, "dev", "payments")
    latest = Ledger(relay_database()).history(shop.app, "payments", "dev", limit=1)[0]
    assert latest.commit == v2 and latest.outcome in {Outcome.ROLLED_BACK, Outcome.FAILED}
    assert record is not None and record.commit == v1
    running = dev.running(shop.app, "dev", "payments")
    assert [(r.commit, r.status) for r in running] == [(v1, "running")], running


def test_two_releases_of_one_service_started_together_run_one_after_the_other(
    shop: Shop, client: docker.DockerClient
) -> None:
    commits = []
    for n in (3, 4):
        shop.edit("services/payments/app.py", '"""', f'"""Payments v{n}.\n')
        commits.append(shop.commit(f"payments v{n}"))
    staging = platform(client, shop, "staging")
    most = 0
    threads = [
        in_background(
            lambda c=c: asyncio.run(service_pipeline(str(shop.repo), c, "payments", "staging"))
        )
        for c in commits
    ]
    deadline = time.monotonic() + 240
    while any(t.is_alive() for t, _ in threads) and time.monotonic() < deadline:
        most = max(most, len(staging.running(shop.app, "staging", "payments")))
        time.sleep(0.1)
    for thread, outcome in threads:
        thread.join(timeout=5)
        assert "error" not in outcome, outcome.get("error")

    records = Ledger(relay_database()).history(shop.app, "payments", "staging")
    assert sorted(r.commit for r in records) == sorted(commits), records
    assert all(r.outcome == Outcome.SUCCEEDED for r in records)
    first, last = sorted(records, key=lambda r: r.ended_at)
    assert most <= 2, f"{most} containers at once: the two deployments interleaved"
    assert served_version("staging") == last.commit
    running = staging.running(shop.app, "staging", "payments")
    assert [(r.image, r.status) for r in running] == [(last.image, "running")]
    assert first.ended_at <= last.ended_at
