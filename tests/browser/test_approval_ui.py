"""Production approval answered in the Prefect UI, in a real browser, as a person would.

The shop goes dev → staging; a promotion to prod pauses in its `approval` subflow. The test
opens the UI served by the local Prefect server, finds the promotion in the flow runs list,
opens its approval subflow, clicks Resume, reads the form's description (digests, commit, what
passed staging), fills it in and submits. Approving ships the staged digests to production;
rejecting leaves production as it was. Screenshots go to test-output/browser/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from playwright.sync_api import Locator, Page, expect
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun

from deployments.approvals import PAUSED, decide
from flows.promote import promote
from flows.release import release
from relay.errors import NotApproved
from relay.ledger import Ledger, Outcome
from relay.platforms.docker import DockerPlatform
from relay.settings import relay_database, relay_home
from relay.traffic import make_router
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 16500, "staging": 17500, "prod": 18500}
APPROVAL_TIMEOUT = 120  # seconds the approval form waits before it counts as a rejection
PAUSE_WAIT = 240  # checkout and promotion gate before the form appears, on a busy machine
PROMOTION_WAIT = 360  # four services rolled out to prod after the approval
BUILD_WAIT = 900  # a release to dev or staging, builds and tests included, on a fresh machine
RESUME_TRIES = 3  # submits of one answer when the server aborts it (busy database)
STATE_WAIT_MS = 60_000  # the UI polls run states; a resumed run finishes within seconds


# Approvers no other test uses: other modules' helpers answer any new approval form on the
# server, and this policy refuses their answers (the form asks again) instead of taking them.
APPROVER, REJECTER = "ada", "grace"


def fast_prod(manifest: dict[str, Any]) -> None:
    manifest["environments"]["prod"]["approval"]["timeout_seconds"] = APPROVAL_TIMEOUT
    manifest["environments"]["prod"]["approval"]["approvers"] = [APPROVER, REJECTER]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_repository(tmp_path_factory, "uiappr", OFFSETS) as shop:
        shop.edit_manifest(fast_prod)
        yield shop


@pytest.fixture(scope="module")
def v1(shop: Shop) -> str:
    """The shop's first commit, released to dev and promoted to staging."""
    commit = shop.commit("Initial shop")
    off_browser_thread(lambda: asyncio.run(release(str(shop.repo), commit)), BUILD_WAIT)
    off_browser_thread(lambda: asyncio.run(promote(str(shop.repo), commit, "staging")), BUILD_WAIT)
    return commit


@pytest.fixture(scope="module")
def ports(shop: Shop, v1: str) -> dict[str, int]:
    manifest = yaml.safe_load((shop.repo / "relay.yaml").read_text())
    return {name: int(spec["port"]) for name, spec in manifest["services"].items()}


def ui_url() -> str:
    """The Prefect server serves its UI at the API's address without `/api`."""
    return os.environ["PREFECT_API_URL"].rstrip("/").removesuffix("/api")


def version(environment: str, port: int) -> str:
    url = f"http://127.0.0.1:{port + OFFSETS[environment]}/version"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(json.load(response)["version"])


def serving(app: str, environment: str, services: list[str]) -> dict[str, str]:
    """The digest each service's active container runs (the one HAProxy sends traffic to)."""
    found = {}
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        platform = DockerPlatform(
            client, make_router("haproxy", name=f"{app}-{environment}", home=relay_home())
        )
        for service in services:
            active = platform.active(app, environment, service)
            found[service] = active.digest if active is not None else ""
    return found


class Background:
    """`call()` in a thread of its own.

    Everything Prefect runs there, never on this (the browser's) thread: Playwright's sync API
    keeps an asyncio loop current on it, and Prefect's dual sync/async functions would then
    hand back coroutines that nobody awaits instead of doing the work."""

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.outcome["result"] = call()
        except BaseException as exc:
            self.outcome["error"] = exc

    def finish(self, timeout: float) -> dict[str, Any]:
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not end within {timeout} s"
        return self.outcome

    def result(self, timeout: float) -> Any:
        outcome = self.finish(timeout)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]


def off_browser_thread(call: Callable[[], Any], timeout: float = PROMOTION_WAIT) -> Any:
    return Background(call, getattr(call, "__name__", "prefect")).result(timeout)


@contextmanager
def promoting(
    shop: Shop, commit: str, name: str, services: list[str] | None
) -> Iterator[tuple[str, Background]]:
    """Start a promotion to prod named `promote-prod-<app>-<name>`; if the test ends while its
    form still waits, reject it there, so no run stays paused on the server."""
    run_name = f"promote-prod-{shop.app}-{name}"
    named = promote.with_options(flow_run_name=run_name)
    promotion = Background(
        lambda: asyncio.run(named(str(shop.repo), commit, "prod", services)), run_name
    )
    try:
        yield run_name, promotion
    finally:
        if promotion.thread.is_alive():
            off_browser_thread(lambda: reject_waiting(shop.app), timeout=60)
            promotion.thread.join(timeout=60)


def reject_waiting(app: str) -> None:
    for form in paused_approvals(app):
        decide(str(form.id), False, REJECTER, "the browser test ended before a decision", wait=0)


def paused_approvals(app: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[f"approve-{app}-prod"]), state=PAUSED
            )
        )


def wait_until_paused(app: str, promotion: Background) -> None:
    """Until the approval form exists: the UI is only opened once there is something to find."""
    deadline = time.monotonic() + PAUSE_WAIT
    while time.monotonic() < deadline:
        assert "error" not in promotion.outcome, promotion.outcome["error"]
        if off_browser_thread(lambda: paused_approvals(app), timeout=30):
            return
        time.sleep(0.5)
    raise AssertionError(f"no approval form within {PAUSE_WAIT} s")


def open_approval_form(page: Page, app: str, run_name: str) -> tuple[Locator, str]:
    """Runs → search the promotion → its Subflow Runs → the paused approval → Resume.

    Returns the dialog and the promotion run's page address."""
    page.goto(f"{ui_url()}/runs")
    page.get_by_role("searchbox", name="Search by flow run name").fill(run_name)
    page.get_by_role("link", name=run_name, exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/flow-run/"))
    expect(page.get_by_role("banner")).to_contain_text(run_name)
    run_page = page.url
    page.get_by_text("Subflow Runs", exact=True).click()
    page.get_by_role("link", name=f"approve-{app}-prod", exact=True).first.click()
    expect(state_badge(page)).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Resume Flow Run")).to_be_visible()
    return dialog, run_page


def state_badge(page: Page) -> Locator:
    """The run's state next to its name (the first state badge on a run's page)."""
    return page.locator(".state-badge").first


def show_finished(page: Page, run_page: str, app: str, state: str) -> None:
    """The promotion's page once it ended, on its Subflow Runs: the approval and, when it was
    approved, each service's deployment, with their states (for the screenshot)."""
    page.goto(run_page)
    expect(state_badge(page)).to_have_text(state, timeout=STATE_WAIT_MS)
    page.get_by_text("Subflow Runs", exact=True).click()
    expect(page.get_by_role("link", name=f"approve-{app}-prod", exact=True)).to_be_visible()


def form_field(dialog: Locator, title: str) -> Locator:
    """One field of the form Prefect renders from the ApprovalForm's JSON schema, by its
    title ("Decision", "Approver", "Comment", with " (Optional)" when it has a default).
    Its <label> does not point at the input, so get_by_label cannot find it."""
    title_text = dialog.page.get_by_text(re.compile(rf"^{title}( \(Optional\))?$"))
    return dialog.locator(".schema-form-property").filter(has=title_text)


def answer(dialog: Locator, decision: str | None, approver: str, comment: str) -> None:
    """Fill the form; `decision` None leaves the choice empty, as the form starts."""
    control = form_field(dialog, "Decision").locator(".p-select-button__control")
    expect(control).to_have_text("")  # nothing is chosen for the approver
    if decision is not None:
        choose(dialog, decision)
    form_field(dialog, "Approver").get_by_role("textbox").fill(approver)
    form_field(dialog, "Comment").get_by_role("textbox").fill(comment)


def refused_without_a_decision(dialog: Locator) -> None:
    """Submitting without choosing approve or reject sends nothing: the form says the
    decision is required and stays open, the run still waits."""
    dialog.get_by_role("button", name="Submit").click()
    expect(dialog.get_by_text("'decision' is a required property")).to_be_visible()
    expect(dialog).to_be_visible()
    expect(state_badge(dialog.page)).to_have_text("Paused")


def choose(dialog: Locator, decision: str) -> None:
    control = form_field(dialog, "Decision").locator(".p-select-button__control")
    control.focus()
    dialog.page.keyboard.press(" ")  # opens the list of Prefect's select
    dialog.page.get_by_role("option", name=decision, exact=True).click()
    expect(control).to_have_text(decision)


def submit(dialog: Locator) -> None:
    """Submit the form and check the server took the answer.

    Prefect's SQLite server, busy with other runs, sometimes aborts a resume ("database is
    locked"); the run stays paused and the UI only shows a generic error toast with the form
    still open. A person would submit again: so does this, a few times, and says so."""
    page = dialog.page
    refusals: list[str] = []
    for _ in range(RESUME_TRIES):
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/resume")
        ) as answered:
            dialog.get_by_role("button", name="Submit").click()
        response = answered.value
        if not response.ok:
            refusals.append(f"HTTP {response.status}: {response.text()[:300]}")
            if response.status < 500:
                break
            continue
        result = response.json()
        if result.get("status") == "ACCEPT":
            expect(dialog).to_be_hidden()
            for refusal in refusals:
                warnings.warn(
                    f"the server refused a resume, submitted again: {refusal}", stacklevel=2
                )
            return
        refusals.append(f"{result.get('status')}: {(result.get('details') or {}).get('reason')}")
        if result.get("status") != "ABORT":  # REJECT: the answer itself is wrong
            break
        expect(state_badge(page)).to_have_text("Paused")  # e.g. another answer just landed
    raise AssertionError(f"the server did not take the answer: {refusals}")


def expect_description(dialog: Locator, shop: Shop, commit: str, services: list[str]) -> None:
    """The description names the commit and, per service, the digest staging verified, the
    commit it was built from and when it passed staging."""
    ledger = Ledger(relay_database())
    expect(dialog.get_by_role("heading", name=f"Deploy {shop.app} to prod?")).to_be_visible()
    expect(dialog.get_by_text(commit, exact=True)).to_be_visible()
    for service in services:
        staged = ledger.current(shop.app, "staging", service)
        assert staged is not None and staged.commit == commit
        row = dialog.get_by_role("row").filter(has_text=service)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(staged.digest.removeprefix("sha256:")[:12])
        expect(row).to_contain_text(staged.commit[:10])
        expect(row).to_contain_text(f"✓ {staged.ended_at:%m-%d %H:%M}")
    expect(dialog.get_by_role("columnheader", name="staging (UTC)")).to_be_visible()
    expect(dialog.get_by_text("Every digest above passed staging")).to_be_visible()


def test_approving_in_the_ui_ships_the_staged_digests(
    page: Page, shop: Shop, v1: str, ports: dict[str, int], output_dir: Path
) -> None:
    services = list(ports)
    staged = serving(shop.app, "staging", services)
    with promoting(shop, v1, "approve", None) as (run_name, promotion):
        wait_until_paused(shop.app, promotion)
        dialog, run_page = open_approval_form(page, shop.app, run_name)
        expect_description(dialog, shop, v1, services)
        answer(dialog, None, approver=APPROVER, comment="ship it, checked in the UI")
        refused_without_a_decision(dialog)  # one careless click decides nothing
        choose(dialog, "approve")
        page.screenshot(path=output_dir / "approval-form.png")
        submit(dialog)
        expect(state_badge(page)).to_have_text("Completed", timeout=STATE_WAIT_MS)
        outcome = promotion.finish(PROMOTION_WAIT)

    assert "error" not in outcome, outcome.get("error")
    show_finished(page, run_page, shop.app, "Completed")
    page.screenshot(path=output_dir / "approval-completed.png")

    assert serving(shop.app, "prod", services) == staged
    ledger = Ledger(relay_database())
    for service, port in ports.items():
        assert version("prod", port) == v1
        record = ledger.current(shop.app, "prod", service)
        assert record is not None and record.digest == staged[service]
        assert record.approver == APPROVER and record.comment == "ship it, checked in the UI"


def test_rejecting_in_the_ui_leaves_production_as_it_was(
    page: Page, shop: Shop, v1: str, ports: dict[str, int], output_dir: Path
) -> None:
    services = list(ports)
    before = serving(shop.app, "prod", services)
    assert all(before.values()), f"production should run the approved v1: {before}"
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    v2 = shop.commit("Payments v2")
    payments = ["payments"]
    off_browser_thread(
        lambda: asyncio.run(release(str(shop.repo), v2, services=payments)), BUILD_WAIT
    )
    off_browser_thread(
        lambda: asyncio.run(promote(str(shop.repo), v2, "staging", payments)), BUILD_WAIT
    )
    assert serving(shop.app, "staging", ["payments"])["payments"] != before["payments"]

    with promoting(shop, v2, "reject", ["payments"]) as (run_name, promotion):
        wait_until_paused(shop.app, promotion)
        dialog, run_page = open_approval_form(page, shop.app, run_name)
        expect_description(dialog, shop, v2, ["payments"])
        answer(dialog, "reject", approver=REJECTER, comment="not today")
        page.screenshot(path=output_dir / "rejection-form.png")
        submit(dialog)
        expect(state_badge(page)).to_have_text("Failed", timeout=STATE_WAIT_MS)
        outcome = promotion.finish(PROMOTION_WAIT)

    assert isinstance(outcome.get("error"), NotApproved), outcome
    assert f"{REJECTER} rejected" in str(outcome["error"])
    show_finished(page, run_page, shop.app, "Failed")
    page.screenshot(path=output_dir / "rejection-finished.png")

    assert serving(shop.app, "prod", services) == before
    for port in ports.values():
        assert version("prod", port) == v1
    ledger = Ledger(relay_database())
    last = ledger.history(shop.app, "payments", "prod", limit=1)[0]
    assert last.outcome == Outcome.REJECTED and last.commit == v2
    assert f"{REJECTER} rejected" in last.reason and "not today" in last.reason
    current = ledger.current(shop.app, "prod", "payments")
    assert current is not None and current.commit == v1 and current.digest == before["payments"]
