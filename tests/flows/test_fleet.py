"""Fleet releases on the example shop: change impact, dependency order, release-train rollback.

Runs on the real stack under its own app name and ports (see tests/flows/shop.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from deployments.approvals import decide, waiting_runs
from flows.promote import promote
from flows.release import release
from relay.errors import ManifestError, RolledBack
from relay.ledger import Ledger, Outcome
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 22000, "staging": 23000, "prod": 24000}
SMOKE = (
    "import json, os, urllib.request\n\n\n"
    "def test_health():\n"
    "    with urllib.request.urlopen(os.environ['SERVICE_URL'] + '/healthz', timeout=5) as r:\n"
    "        assert json.load(r)['status'] == 'ok'\n"
)


def production_with_smoke_tests(manifest: dict[str, Any]) -> None:
    prod = manifest["environments"]["prod"]
    prod.update(strategy="rolling", smoke_tests="python -m pytest -q tests/smoke")
    prod["approval"].update(timeout_seconds=60, approvers=["carol"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "fleet", OFFSETS) as shop:
        shop.edit_manifest(production_with_smoke_tests)
        for service in ("gateway", "orders", "inventory", "payments"):
            smoke = shop.repo / "services" / service / "tests" / "smoke"
            smoke.mkdir()
            (smoke / "test_smoke.py").write_text(SMOKE)
        yield shop


@pytest.fixture(scope="module")
def base(shop: Shop) -> str:
    sha = shop.commit("Fleet v1")
    asyncio.run(release(str(shop.repo), sha))
    return sha


def artifact_versions(key: str) -> int:
    with get_client(sync_client=True) as client:
        return len(
            client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        )


def version(environment: str, port: int) -> str:
    url = f"http://127.0.0.1:{port + OFFSETS[environment]}/version"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(json.load(response)["version"])


def approve_in_background(approver: str, app: str) -> threading.Thread:
    """Answer the next production approval form of `app` that appears (bounded: 60 s); forms
    of other apps (another test on the same server) are not ours to answer."""
    name = f"approve-{app}-prod"
    known = {r.id for r in waiting_runs()}

    def answer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fresh = [r for r in waiting_runs() if r.id not in known and r.name == name]
            if fresh:
                decide(str(fresh[0].id), True, approver, "fleet test")
                return
            time.sleep(0.3)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_changing_a_leaf_rebuilds_only_it_and_retests_its_dependents(shop: Shop, base: str) -> None:
    keys = {s: f"{shop.app}-{s}-dev-integration-tests" for s in ("orders", "gateway", "inventory")}
    before = {s: artifact_versions(k) for s, k in keys.items()}
    shop.edit("services/payments/app.py", '"""', '"""Payments, fleet change.\n')
    sha = shop.commit("Change the payments leaf")

    results = asyncio.run(release(str(shop.repo), sha, base=base))

    assert [(r.service, r.built) for r in results if r.changed] == [("payments", True)]
    assert not any(r.built for r in results if r.service != "payments")
    assert version("dev", 8004) == sha
    assert version("dev", 8001) == base, "gateway was neither rebuilt nor redeployed"
    after = {s: artifact_versions(k) for s, k in keys.items()}
    assert after["orders"] == before["orders"] + 1, "orders depends on payments: re-tested"
    assert after["gateway"] == before["gateway"] + 1, "gateway depends on it transitively"
    assert after["inventory"] == before["inventory"], "inventory does not depend on payments"


def test_a_provider_is_deployed_before_its_consumers(shop: Shop, base: str) -> None:
    head_before = Ledger(relay_database()).current(shop.app, "dev", "payments")
    assert head_before is not None
    shop.edit("services/inventory/app.py", '"""', '"""Inventory, provider change.\n')
    shop.edit("services/orders/app.py", '"""', '"""Orders, consumer change.\n')
    sha = shop.commit("Change a provider and its consumer")

    results = asyncio.run(release(str(shop.repo), sha, base=head_before.commit))

    assert [r.service for r in results if r.changed] == ["inventory", "orders"]
    ledger = Ledger(relay_database())
    inventory = ledger.current(shop.app, "dev", "inventory")
    orders = ledger.current(shop.app, "dev", "orders")
    assert inventory is not None and orders is not None
    assert inventory.commit == orders.commit == sha
    assert inventory.ended_at <= orders.started_at, "orders waited for inventory"


def test_a_failing_last_service_in_production_rolls_back_the_whole_train(shop: Shop) -> None:
    ledger = Ledger(relay_database())
    v1 = ledger.current(shop.app, "dev", "inventory")
    assert v1 is not None
    asyncio.run(release(str(shop.repo), v1.commit))  # everything verified in dev at this commit
    asyncio.run(release(str(shop.repo), v1.commit, through="staging"))
    approver = approve_in_background("carol", shop.app)  # its 60 s start with the promotion
    asyncio.run(promote(str(shop.repo), v1.commit, "prod"))
    approver.join(timeout=5)
    before = {s: version("prod", p) for s, p in (("inventory", 8003), ("gateway", 8001))}

    shop.edit("services/inventory/app.py", '"""', '"""Inventory, train.\n')
    (shop.repo / "services/gateway/tests/smoke/test_smoke.py").write_text(
        SMOKE + "\n\ndef test_fails_in_production():\n    assert False, 'broken on purpose'\n"
    )
    sha = shop.commit("Inventory and a gateway that fails its production smoke test")
    asyncio.run(release(str(shop.repo), sha, base=v1.commit, through="staging"))
    approver = approve_in_background("carol", shop.app)
    with pytest.raises(RolledBack) as failure:
        asyncio.run(promote(str(shop.repo), sha, "prod", ["inventory", "gateway"]))
    approver.join(timeout=5)

    assert "smoke tests failed" in str(failure.value)
    assert "put back: inventory" in str(failure.value)
    assert {s: version("prod", p) for s, p in (("inventory", 8003), ("gateway", 8001))} == before
    records = {r.service: r for r in ledger.history(shop.app, environment="prod", limit=2)}
    assert records["inventory"].outcome == Outcome.ROLLED_BACK
    assert "the promotion stopped" in records["inventory"].reason
    assert records["gateway"].outcome == Outcome.ROLLED_BACK


def test_a_dependency_cycle_stops_the_release_before_anything_runs(shop: Shop) -> None:
    shop.edit("services/payments/app.py", '"""', '"""Payments, cycle.\n')

    def cycle(manifest: dict[str, Any]) -> None:
        manifest["services"]["payments"]["depends_on"] = ["gateway"]

    shop.edit_manifest(cycle)
    sha = shop.commit("A dependency cycle")
    with pytest.raises(ManifestError, match="dependency cycle .*payments.*gateway"):
        asyncio.run(release(str(shop.repo), sha))
    assert Ledger(relay_database()).history(shop.app, "payments", "dev", limit=1)[0].commit != sha
