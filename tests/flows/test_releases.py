"""Releases as units on the real stack: a one-service change promoted without naming it, a
settings-only change, a patched base image, the promotion gate, concurrent promotion over the
dependency graph, the approval's current -> new table, and an environment rollback.

The example shop runs under its own app name and ports (tests/flows/shop.py), built FROM a base
image of its own (so patching it touches no other test), with `relay` driven as a user would
where the point is the command line. Each step builds on the one before (module fixtures)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect.client.orchestration import get_client

from deployments.approvals import decide, waiting_runs
from flows.promote import promote
from flows.release import release
from relay.errors import TerminalError
from relay.ledger import Ledger, Outcome, Record
from relay.releases import Release
from relay.settings import relay_database
from tests.flows.shop import Shop, shop_repository

pytestmark = pytest.mark.stack

OFFSETS = {"dev": 14250, "staging": 14500, "prod": 14750}
PORTS = {"gateway": 8001, "orders": 8002, "inventory": 8003, "payments": 8004}
SERVICES = ("inventory", "payments", "orders", "gateway")
RELAY = str(Path(sys.executable).parent / "relay")
BASE = f"relay-test/units-base-{uuid.uuid4().hex[:8]}:1"


def build_base(client: docker.DockerClient, flavour: str) -> str:
    """The shop's base image under one tag; another `flavour` is other content (a patch)."""
    dockerfile = f"FROM python:3.11-slim\nLABEL org.relay.test.flavour={flavour}\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    image, _ = client.images.build(
        fileobj=context, custom_context=True, tag=BASE, pull=False, network_mode="host", rm=True
    )
    return str(image.id)


def configure(manifest: dict[str, Any]) -> None:
    # staging: a canary whose steps last a while, so that concurrent deploys can be seen
    staging = manifest["environments"]["staging"]
    staging.update(strategy="canary", canary_steps=[50, 100])
    staging["analysis"] = {"interval_seconds": 2, "on_inconclusive": "continue"}
    prod = manifest["environments"]["prod"]
    prod.update(strategy="rolling")
    prod["approval"].update(timeout_seconds=120, approvers=["alice"])


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        yield client


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, engine: docker.DockerClient) -> Iterator[Shop]:
    build_base(engine, "original")
    try:
        with shop_repository(tmp_path_factory, "units", OFFSETS) as shop:
            shop.edit_manifest(configure)
            for service in SERVICES:
                shop.edit(
                    f"services/{service}/Dockerfile",
                    "ARG BASE_IMAGE=python:3.11-slim",
                    f"ARG BASE_IMAGE={BASE}",
                )
            yield shop
    finally:
        engine.images.remove(BASE, force=True)


def relay(shop: Shop, *args: str, timeout: float = 600) -> str:
    """The `relay` command, as a user runs it in a terminal; its output, or the failure's."""
    done = subprocess.run(
        [RELAY, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def version(environment: str, service: str) -> str:
    url = f"http://127.0.0.1:{PORTS[service] + OFFSETS[environment]}/version"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(json.load(response)["version"])


def ledger() -> Ledger:
    return Ledger(relay_database())


def release_of(shop: Shop, commit: str) -> Release:
    made = ledger().release_of_commit(shop.app, commit)
    assert made is not None, f"no release for {commit}"
    return made


def latest(shop: Shop, environment: str, service: str) -> Record:
    return ledger().history(shop.app, service, environment, limit=1)[0]


class Approver:
    """Answers the next production form of the app as alice, keeping what the form said."""

    def __init__(self, app: str) -> None:
        self.name = f"approve-{app}-prod"
        self.known = {r.id for r in waiting_runs()}
        self.description = ""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._answer, daemon=True)
        self.thread.start()

    def _answer(self) -> None:
        try:
            self._wait_and_answer()
        except BaseException as exc:  # the test reads .error
            self.error = exc
            raise

    def _wait_and_answer(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            fresh = [r for r in waiting_runs() if r.id not in self.known and r.name == self.name]
            if fresh:
                with get_client(sync_client=True) as client:
                    stored = client.read_flow_run_input(
                        fresh[0].id, "paused-approval-1-description"
                    )
                self.description = json.loads(stored)  # the server keeps it JSON-encoded
                decide(str(fresh[0].id), True, "alice", "release test")
                return
            time.sleep(0.3)


def promote_to_prod(shop: Shop, commit: str) -> Approver:
    approver = Approver(shop.app)
    asyncio.run(promote(str(shop.repo), commit, "prod"))
    approver.thread.join(timeout=10)
    assert approver.error is None, approver.error
    return approver


@pytest.fixture(scope="module")
def v1(shop: Shop) -> str:
    sha = shop.commit("Shop v1")
    relay(shop, "run", "--repo", str(shop.repo), "--ref", sha, "--through", "staging")
    promote_to_prod(shop, sha)
    return sha


@pytest.fixture(scope="module")
def v2(shop: Shop, v1: str) -> tuple[str, str, Approver]:
    """payments changes; the run and the promotion name no service."""
    shop.edit("services/payments/app.py", '"""', '"""Payments v2.\n')
    sha = shop.commit("Payments v2")
    ran = relay(
        shop,
        "run",
        "--repo",
        str(shop.repo),
        "--ref",
        "HEAD",
        "--base",
        "HEAD~1",
        "--through",
        "staging",
    )
    approver = promote_to_prod(shop, sha)
    return sha, ran, approver


def test_a_one_service_change_is_promoted_without_naming_it(
    shop: Shop, v1: str, v2: tuple[str, str, Approver]
) -> None:
    sha, ran, _ = v2
    made = release_of(shop, sha)
    assert made.short_id in ran, ran
    for service in SERVICES:
        record = latest(shop, "prod", service)
        assert record.release == made.id
        assert record.image == str(made.image(service)), f"prod serves the release's {service}"
        current = ledger().current(shop.app, "prod", service)
        assert current is not None and current.image == str(made.image(service))
        expected = Outcome.SUCCEEDED if service == "payments" else Outcome.UNCHANGED
        assert record.outcome == expected, service
    assert version("prod", "payments") == sha
    assert {version("prod", s) for s in ("inventory", "orders", "gateway")} == {v1}
    assert made.services["payments"].commit == sha
    assert made.services["orders"].commit == v1, "reused: built from v1"


def test_the_approval_form_shows_current_to_new_per_service(
    shop: Shop, v1: str, v2: tuple[str, str, Approver]
) -> None:
    sha, _, approver = v2
    new, old = release_of(shop, sha), release_of(shop, v1)
    rows = {
        line.split("|")[1].strip(): line
        for line in approver.description.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    hex_of = lambda image: image.digest.removeprefix("sha256:")[:12]  # noqa: E731
    assert (
        f"`{hex_of(old.image('payments'))}` → **`{hex_of(new.image('payments'))}`**"
        in rows["payments"]
    )
    for service in ("inventory", "orders", "gateway"):
        assert f"`{hex_of(new.image(service))}` unchanged" in rows[service]
    assert "1 of 4 service(s) change in prod" in approver.description
    assert new.short_id in approver.description


@pytest.fixture(scope="module")
def v3(shop: Shop, v2: tuple[str, str, Approver]) -> tuple[str, list[Any]]:
    """Only relay.yaml changes, for one service: gateway now takes every key of its secret."""

    def every_key(manifest: dict[str, Any]) -> None:
        manifest["services"]["gateway"]["secret_keys"] = []

    shop.edit_manifest(every_key)
    sha = shop.commit("gateway: every configuration key")
    return sha, asyncio.run(release(str(shop.repo), sha))


def test_a_settings_only_change_redeploys_one_service_with_the_same_digest(
    shop: Shop, v2: tuple[str, str, Approver], v3: tuple[str, list[Any]]
) -> None:
    sha, results = v3
    before, after = release_of(shop, v2[0]), release_of(shop, sha)
    assert after.id != before.id
    assert not any(r.built for r in results), "nothing was built"
    assert [r.service for r in results if r.changed] == ["gateway"]
    assert {s: after.image(s) for s in SERVICES} == {s: before.image(s) for s in SERVICES}
    record = latest(shop, "dev", "gateway")
    assert record.outcome == Outcome.SUCCEEDED and record.release == after.id
    assert record.image == str(before.image("gateway")), "the same digest, redeployed"
    assert (
        record.settings
        == after.fingerprint("dev", "gateway")
        != before.fingerprint("dev", "gateway")
    )
    for service in ("inventory", "payments", "orders"):
        assert latest(shop, "dev", service).outcome == Outcome.UNCHANGED


@pytest.fixture(scope="module")
def v4(shop: Shop, v3: tuple[str, list[Any]]) -> str:
    """A provider (inventory), its consumer (orders) and an independent service (payments)
    change together; the release goes through staging, where each deploy is a 2-step canary."""
    for service in ("inventory", "orders", "payments"):
        shop.edit(f"services/{service}/app.py", '"""', f'"""{service} v4.\n')
    sha = shop.commit("inventory, orders and payments v4")
    asyncio.run(release(str(shop.repo), sha, through="staging"))
    return sha


def test_a_promotion_deploys_independent_services_at_once_providers_first(
    shop: Shop, v4: str
) -> None:
    made = release_of(shop, v4)
    records = {s: latest(shop, "staging", s) for s in ("inventory", "orders", "payments")}
    assert all(r.release == made.id and r.outcome == Outcome.SUCCEEDED for r in records.values())
    inventory, orders, payments = records["inventory"], records["orders"], records["payments"]
    assert inventory.started_at < payments.ended_at and payments.started_at < inventory.ended_at, (
        "inventory and payments do not depend on each other: their deploys overlap"
    )
    assert inventory.ended_at <= orders.started_at, "orders started once inventory was switched"
    assert payments.ended_at <= orders.started_at, "and once payments was"
    gateway = latest(shop, "staging", "gateway")  # v3's settings reach staging with v4
    assert gateway.outcome == Outcome.SUCCEEDED and gateway.image == str(made.image("gateway"))
    assert gateway.settings == made.fingerprint("staging", "gateway")


def test_a_release_with_a_digest_that_did_not_pass_is_refused_naming_it(
    shop: Shop, v4: str
) -> None:
    shop.edit("services/payments/app.py", '"""', '"""Payments v5, dev only.\n')
    sha = shop.commit("Payments v5")
    asyncio.run(release(str(shop.repo), sha))  # dev only
    made = release_of(shop, sha)
    before = ledger().history(shop.app, environment="prod", limit=100)
    # staging runs v4; v5 of payments passed only dev; the other digests passed staging
    with pytest.raises(TerminalError, match="refusing to promote; nothing was deployed") as refused:
        asyncio.run(promote(str(shop.repo), sha, "prod"))
    lines = [line.strip() for line in str(refused.value).splitlines()[1:]]
    assert len(lines) == 1 and lines[0].startswith(f"payments: {made.image('payments')}")
    assert "has not passed staging" in lines[0]
    assert ledger().history(shop.app, environment="prod", limit=100) == before


@pytest.fixture(scope="module")
def rolled_back(shop: Shop, v2: tuple[str, str, Approver], v4: str) -> str:
    """v4 reaches prod, then prod is rolled back as a whole with the command line."""
    promote_to_prod(shop, v4)
    return relay(shop, "rollback", "--repo", str(shop.repo), "--env", "prod")


def test_an_environment_rollback_returns_to_the_previous_release_consumers_first(
    shop: Shop, v2: tuple[str, str, Approver], v4: str, rolled_back: str
) -> None:
    previous, current = release_of(shop, v2[0]), release_of(shop, v4)
    records = {s: latest(shop, "prod", s) for s in SERVICES}
    for service, record in records.items():
        assert record.image == str(previous.image(service)), service
        assert record.release == previous.id
    changed = {s for s in SERVICES if previous.image(s) != current.image(s)}
    assert changed == {"inventory", "orders", "payments"}
    for service in changed | {"gateway"}:  # gateway: its settings changed in v3
        assert (
            records[service].strategy == "rollback"
            and records[service].outcome == Outcome.SUCCEEDED
        )
    assert records["gateway"].ended_at <= records["orders"].started_at, "consumers first"
    assert records["orders"].ended_at <= records["inventory"].started_at
    assert records["orders"].ended_at <= records["payments"].started_at
    assert version("prod", "payments") == v2[0] and version("prod", "inventory") != v4
    assert "prod serves its previous release again (4 service(s) changed)" in rolled_back


def test_releases_show_where_each_was_verified_and_serves(
    shop: Shop, v1: str, v2: tuple[str, str, Approver], v4: str, rolled_back: str
) -> None:
    previous, current = release_of(shop, v2[0]), release_of(shop, v4)
    lines = relay(shop, "releases", "--app", shop.app).splitlines()
    row = {line.split()[0]: line.split() for line in lines[1:]}
    assert row[previous.short_id][-2:] == ["dev,staging,prod", "prod"]
    assert row[current.short_id][-2:] == ["dev,staging,prod", "staging"]
    prod_only = relay(shop, "releases", "--app", shop.app, "--env", "prod").splitlines()[1:]
    first = release_of(shop, v1)
    assert {line.split()[0] for line in prod_only} == {
        first.short_id,
        previous.short_id,
        current.short_id,
    }, "every release that served prod, and no other"
    again = subprocess.run(
        [RELAY, "rollback", "--repo", str(shop.repo), "--env", "prod"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 1 and "already runs a rolled-back release" in again.stderr


def test_relay_diff_compares_environments_service_by_service(
    shop: Shop, v2: tuple[str, str, Approver], v4: str, rolled_back: str
) -> None:
    text = relay(shop, "diff", "prod", "staging", "--app", shop.app, "--repo", str(shop.repo))
    rows = {line.split()[0]: line for line in text.splitlines()[1:] if line and line[0] != " "}
    previous, current = release_of(shop, v2[0]), release_of(shop, v4)
    assert previous.image("orders").short in rows["orders"]
    assert current.image("orders").short in rows["orders"]
    assert "unchanged" in rows["gateway"] and "secret_keys" in rows["gateway"]
    assert "4 of 4 service(s) differ." in text
    assert "inventory, orders and payments v4" in text, "the commits between"


def test_a_patched_base_image_rebuilds_every_service_then_nothing(
    shop: Shop, engine: docker.DockerClient, rolled_back: str
) -> None:
    sha = (
        shop.commit("nothing")
        if False
        else subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=shop.repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    before = release_of(shop, sha)
    build_base(engine, "patched")
    patched = asyncio.run(release(str(shop.repo), sha))
    assert all(r.built for r in patched), [(r.service, r.built) for r in patched]
    after = release_of(shop, sha)
    assert all(after.image(s) != before.image(s) for s in SERVICES)
    again = asyncio.run(release(str(shop.repo), sha))
    assert not any(r.built or r.changed for r in again)
    assert release_of(shop, sha).id == after.id
