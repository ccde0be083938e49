"""Promotion on the real stack: the same digest dev → staging → prod, the promotion gate,
approval through Prefect's pause/resume with typed input, rejection and timeout."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from deployments.approvals import decide, waiting_runs
from flows.promote import promote
from flows.release import release
from flows.rollback import rollback
from flows.service_pipeline import ServiceRelease
from relay.errors import NotApproved, TerminalError
from relay.ledger import Ledger, Outcome
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 19000, "staging": 20000, "prod": 21000}
APPROVAL_TIMEOUT = 15


def fast_prod(manifest: dict[str, Any]) -> None:
    manifest["environments"]["prod"]["approval"]["timeout_seconds"] = APPROVAL_TIMEOUT
    manifest["environments"]["prod"]["approval"]["approvers"] = ["alice", "bob"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "promo", OFFSETS) as shop:
        shop.edit_manifest(fast_prod)
        yield shop


@pytest.fixture(scope="module")
def v1(shop: Shop) -> str:
    return shop.commit("Initial shop")


def version(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as response:
        return str(json.load(response)["version"])


def public_url(environment: str, port: int) -> str:
    return f"http://127.0.0.1:{port + OFFSETS[environment]}"


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for_approval_form(known: set[Any], app: str, timeout: float = 60) -> FlowRun:
    """The new production approval form of `app` (not another test's, on the same server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r for r in waiting_runs() if r.id not in known and r.name == f"approve-{app}-prod"]
        if fresh:
            return fresh[0]
        time.sleep(0.3)
    raise AssertionError("no approval form appeared")


def form_description(run: FlowRun) -> str:
    with get_client(sync_client=True) as client:
        value = client.read_flow_run_input(run.id, "paused-approval-1-description")
    return str(value)


def test_nothing_is_promoted_before_it_passed_the_previous_environment(shop: Shop, v1: str) -> None:
    with pytest.raises(TerminalError, match="no release was made for commit"):
        asyncio.run(promote(str(shop.repo), v1, "staging"))
    asyncio.run(release(str(shop.repo), v1))
    with pytest.raises(TerminalError, match="has not passed staging") as refused:
        asyncio.run(promote(str(shop.repo), v1, "prod"))
    assert "nothing was deployed" in str(refused.value)
    ledger = Ledger(relay_database())
    assert ledger.history(shop.app, environment="prod") == []


def test_staging_gets_the_exact_digests_that_passed_dev(shop: Shop, v1: str) -> None:
    dev = {r.service: r for r in asyncio.run(release(str(shop.repo), v1))}
    staged = {r.service: r for r in asyncio.run(promote(str(shop.repo), v1, "staging"))}
    assert {s: r.image for s, r in staged.items()} == {s: r.image for s, r in dev.items()}
    ledger = Ledger(relay_database())
    for service, result in staged.items():
        assert version(result.url) == v1
        record = ledger.current(shop.app, "staging", service)
        assert record is not None and record.image == result.image
        assert record.outcome == Outcome.SUCCEEDED


def test_production_waits_for_an_allowed_approver(shop: Shop, v1: str) -> None:
    known = {r.id for r in waiting_runs()}
    thread, outcome = in_background(lambda: asyncio.run(promote(str(shop.repo), v1, "prod")))
    form = wait_for_approval_form(known, shop.app)
    description = form_description(form)
    staged = Ledger(relay_database()).current(shop.app, "staging", "orders")
    assert staged is not None
    assert v1 in description and "passed staging" in description
    assert staged.digest.removeprefix("sha256:")[:12] in description

    with pytest.raises(TerminalError, match="'mallory' is not an approver here"):
        decide(str(form.id), True, "mallory", "let me in")  # the flow asks again
    assert thread.is_alive(), "an approver outside the policy must not release it"
    again = next(r for r in waiting_runs() if r.id == form.id)
    decide(str(again.id), True, "alice", "ship it")
    thread.join(timeout=120)

    assert "error" not in outcome, outcome.get("error")
    results: list[ServiceRelease] = outcome["result"]
    ledger = Ledger(relay_database())
    for result in results:
        assert version(result.url) == v1
        record = ledger.current(shop.app, "prod", result.service)
        assert record is not None and record.approver == "alice" and record.comment == "ship it"


def test_a_rejection_leaves_production_untouched(shop: Shop, v1: str) -> None:
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    v2 = shop.commit("Payments v2")
    asyncio.run(release(str(shop.repo), v2, services=["payments"]))
    asyncio.run(promote(str(shop.repo), v2, "staging", services=["payments"]))

    known = {r.id for r in waiting_runs()}
    thread, outcome = in_background(
        lambda: asyncio.run(promote(str(shop.repo), v2, "prod", services=["payments"]))
    )
    form = wait_for_approval_form(known, shop.app)
    decide(str(form.id), False, "bob", "not today")
    thread.join(timeout=60)

    assert isinstance(outcome.get("error"), NotApproved)
    assert "bob rejected" in str(outcome["error"])
    assert version(public_url("prod", 8004)) == v1
    last = Ledger(relay_database()).history(shop.app, "payments", "prod", limit=1)[0]
    assert last.outcome == Outcome.REJECTED and "not today" in last.reason


def test_no_decision_in_time_counts_as_a_rejection(shop: Shop, v1: str) -> None:
    v2 = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert v2 is not None and v2.commit != v1
    started = time.monotonic()
    with pytest.raises(NotApproved, match="timeout counts as a rejection"):
        asyncio.run(promote(str(shop.repo), v2.commit, "prod", services=["payments"]))
    assert time.monotonic() - started >= APPROVAL_TIMEOUT - 1
    assert version(public_url("prod", 8004)) == v1
    last = Ledger(relay_database()).history(shop.app, "payments", "prod", limit=1)[0]
    assert last.outcome == Outcome.REJECTED


def test_rollback_puts_the_previous_good_version_back(shop: Shop, v1: str) -> None:
    staged = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert staged is not None and staged.commit != v1, "staging runs payments v2"
    started = time.monotonic()
    result = asyncio.run(rollback(str(shop.repo), "payments", "staging"))
    assert time.monotonic() - started < 30
    assert version(result.url) == v1
    record = Ledger(relay_database()).current(shop.app, "staging", "payments")
    assert record is not None and record.strategy == "rollback" and record.commit == v1


def test_a_second_rollback_is_refused_instead_of_undoing_the_first(shop: Shop, v1: str) -> None:
    with pytest.raises(TerminalError, match="already runs a rolled-back version"):
        asyncio.run(rollback(str(shop.repo), "payments", "staging"))
    assert version(public_url("staging", 8004)) == v1
