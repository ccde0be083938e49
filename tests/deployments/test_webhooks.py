"""deployments/webhooks.py against the stack's real Prefect server, over real HTTP.

Each test registers its own deployment of `flows/release.py:release` (`to_deployment` +
`apply`) in a work pool of this module that has no worker, so the runs a delivery creates stay
SCHEDULED and nothing is built. The receiver runs under uvicorn on 127.0.0.1. The deliveries are
GitHub's real sample payloads, signed with a test secret, with `ref`/`after`/`before` pointed
at branches and commits of a local copy of examples/shop. Every test checks the HTTP answer
and the flow runs that exist on the server for its deployment.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun
from pydantic import SecretStr

from deployments.webhooks import RepositoryTarget, WebhookSettings, create_app
from relay.errors import TerminalError
from relay.webhooks import ZERO_SHA, Deliveries, Trigger, parse_github, trigger_to_json

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
# GitHub's own sample payloads (its webhook documentation), kept in the repository.
PAYLOADS = ROOT / "tests" / "data" / "webhook-payloads" / "github"

SECRET = "test-webhook-secret"
TOKEN = "test-gitlab-token"
REPOSITORY = "Codertocat/Hello-World"  # the repository of the sample payloads
PORTS = range(8700, 8800)


def sample(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.payload.json").read_text())


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


# --- the application repository --------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """A local git repository of examples/shop whose relay.yaml maps develop->dev, main->prod."""

    path: Path
    main_1: str  # the first commit, on main
    develop_1: str  # a commit on develop, after main_1
    main_2: str  # develop merged into main (a merge commit)
    broken: str  # a commit whose relay.yaml is invalid


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    path = tmp_path_factory.mktemp("shop") / "shop"
    shutil.copytree(SHOP, path, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    manifest = path / "relay.yaml"
    text = manifest.read_text()
    text = text.replace("  dev:\n", "  dev:\n    branch: develop\n", 1)
    text = text.replace("  prod:\n", "  prod:\n    branch: main\n", 1)
    manifest.write_text(text)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "relay-tests@example.com")
    git(path, "config", "user.name", "Relay tests")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "shop")
    main_1 = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "-b", "develop")
    (path / "services" / "orders" / "CHANGES").write_text("faster checkout\n")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "orders: faster checkout")
    develop_1 = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    git(path, "merge", "--quiet", "--no-ff", "-m", "Merge pull request #2", "develop")
    main_2 = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "-b", "broken", main_1)
    manifest.write_text(text.replace("port: 8004", "port: 8003"))
    git(path, "commit", "--quiet", "-am", "payments on the port of inventory")
    broken = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    return Shop(path, main_1, develop_1, main_2, broken)


# --- Prefect: a work pool without a worker, one deployment per test ---------------------------


@pytest.fixture(scope="module")
def work_pool() -> Iterator[str]:
    name = f"webhook-tests-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))
    yield name
    with get_client(sync_client=True) as client:
        client.delete_work_pool(name)


@dataclass(frozen=True)
class Deployment:
    id: uuid.UUID
    name: str  # flow/deployment, as run_deployment takes it

    def runs(self) -> list[FlowRun]:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[self.id])
                )
            )


@pytest.fixture
def deployment(work_pool: str) -> Iterator[Deployment]:
    from flows.release import release

    name = f"webhook-test-{uuid.uuid4().hex[:8]}"
    runner_deployment = release.to_deployment(name=name, work_pool_name=work_pool)
    deployment_id = runner_deployment.apply()
    registered = Deployment(deployment_id, f"release/{name}")
    yield registered
    with get_client(sync_client=True) as client:
        for run in registered.runs():
            client.delete_flow_run(run.id)
        client.delete_deployment(deployment_id)


# --- the receiver, served -------------------------------------------------------------------


def free_port() -> int:
    for port in sorted(PORTS, key=lambda _: uuid.uuid4().int):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@contextmanager
def served(settings: WebhookSettings) -> Iterator[str]:
    """The receiver for `settings` under uvicorn in a thread, its dispatcher running in the
    app's lifespan; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Retries quick enough for a test: a delivery that cannot succeed fails within a few seconds.
FAST = {
    "dispatch_attempts": 3,
    "dispatch_backoff_seconds": 0.2,
    "dispatch_backoff_max_seconds": 0.5,
    "poll_seconds": 0.2,
}


def settings_for(shop: Shop, deployment: Deployment, state_dir: Path, **extra: Any) -> Any:
    """A receiver of its own: its deliveries in a SQLite file in `state_dir` (not the stack's
    RELAY_DATABASE_URL, which every test would share), unless `database` says otherwise."""
    target = RepositoryTarget(url=str(shop.path))
    return WebhookSettings(
        github_secret=SecretStr(SECRET),
        gitlab_token=SecretStr(TOKEN),
        repositories={REPOSITORY: target, "mike/diaspora": target},
        deployment=deployment.name,
        state_dir=state_dir,
        **{"database": str(state_dir / "deliveries.db"), **FAST, **extra},
    )


@pytest.fixture
def settings(shop: Shop, deployment: Deployment, tmp_path: Path) -> WebhookSettings:
    return settings_for(shop, deployment, tmp_path / "state")


@pytest.fixture
def url(settings: WebhookSettings) -> Iterator[str]:
    with served(settings) as base:
        yield base


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_github(
    url: str,
    event: str | None,
    payload: Any,
    *,
    delivery: str | None = None,
    signature: str | None = "sign",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a delivery as GitHub does: JSON body, HMAC of the exact bytes, event and id."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/test"}
    if event is not None:
        sent["X-GitHub-Event"] = event
    sent["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
    if signature is not None:
        sent["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    sent.update(headers or {})
    return httpx.post(f"{url}/github", content=body, headers=sent, timeout=60)


def push(shop: Shop, ref: str, before: str, after: str) -> dict[str, Any]:
    """GitHub's real branch push, moved to a branch and commits of the local shop."""
    payload = sample("push.with-new-branch")
    payload.update(ref=ref, before=before, after=after, created=before == ZERO_SHA)
    payload["head_commit"]["id"] = after
    return payload


def settled(url: str, answer: httpx.Response, timeout: float = 45) -> dict[str, Any]:
    """The delivery's status once the dispatcher is done with it (no longer queued)."""
    assert answer.status_code == 202, answer.text
    status_url = f"{url}{answer.json()['status_url']}"
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(status_url, timeout=10)
        assert reply.status_code == 200, reply.text
        status: dict[str, Any] = reply.json()
        if status["state"] != "queued":
            return status
        assert time.monotonic() < deadline, f"still queued after {timeout} s: {status}"
        time.sleep(0.1)


def merged_pull_request(shop: Shop) -> dict[str, Any]:
    """GitHub's real closed pull request (a sample that closes unmerged), merged into main."""
    payload = sample("pull_request.closed")
    pr = payload["pull_request"]
    pr.update(merged=True, merge_commit_sha=shop.main_2)
    pr["base"].update(ref="main", sha=shop.main_1)
    return payload


# --- queued, then started ----------------------------------------------------------------------


def test_a_push_to_develop_is_queued_then_starts_one_release_through_dev(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    delivery = str(uuid.uuid4())

    answer = post_github(
        url,
        "push",
        push(shop, "refs/heads/develop", shop.main_1, shop.develop_1),
        delivery=delivery,
    )

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued" and body["delivery"] == delivery
    assert body["status_url"] == f"/deliveries/github/{delivery}"
    status = settled(url, answer)
    assert status["state"] == "started" and status["environment"] == "dev", status
    assert status["delivery"] == delivery and status["reason"] is None
    [run] = deployment.runs()
    assert str(run.id) == status["flow_run_id"]
    assert run.parameters == {
        "repository": str(shop.path),
        "commit": shop.develop_1,
        "through": "dev",
        "base": shop.main_1,
        "manifest_file": "relay.yaml",
    }
    assert run.state is not None and run.state.is_scheduled()
    assert run.idempotency_key == f"github:{delivery}"
    assert {"webhook", "branch:develop"} <= set(run.tags)


def test_a_redelivery_starts_nothing_even_after_a_restart_or_a_lost_database(
    shop: Shop, deployment: Deployment, settings: WebhookSettings, tmp_path: Path
) -> None:
    delivery = str(uuid.uuid4())
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)
    with served(settings) as url:
        first = post_github(url, "push", payload, delivery=delivery)
        again = post_github(url, "push", payload, delivery=delivery)
        started = settled(url, first)
    assert again.status_code == 200
    assert again.json() == {
        "status": "ignored",
        "reason": "duplicate delivery",
        "delivery": delivery,
    }
    assert len(deployment.runs()) == 1

    with served(settings) as url:  # a restart: a new app over the same database
        after_restart = post_github(url, "push", payload, delivery=delivery)
    assert after_restart.status_code == 200
    assert after_restart.json()["reason"] == "duplicate delivery"
    assert len(deployment.runs()) == 1

    # Without the deliveries database, Prefect's idempotency key still gives back the same run.
    lost = settings_for(shop, deployment, tmp_path / "fresh-state")
    with served(lost) as url:
        without_database = post_github(url, "push", payload, delivery=delivery)
        status = settled(url, without_database)
    assert status["flow_run_id"] == started["flow_run_id"]
    assert len(deployment.runs()) == 1


def test_a_new_branch_releases_every_service(shop: Shop, deployment: Deployment, url: str) -> None:
    payload = sample("push.with-new-branch")  # before is all zeros: the branch is new
    assert payload["before"] == ZERO_SHA
    payload.update(ref="refs/heads/develop", after=shop.develop_1)

    status = settled(url, post_github(url, "push", payload))

    assert status["state"] == "started", status
    [run] = deployment.runs()
    assert run.parameters["base"] is None
    assert run.parameters["commit"] == shop.develop_1
    assert run.parameters["through"] == "dev"


def test_a_merged_pull_request_into_main_releases_through_prod(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    status = settled(url, post_github(url, "pull_request", merged_pull_request(shop)))

    assert status["state"] == "started" and status["environment"] == "prod", status
    [run] = deployment.runs()
    assert run.parameters == {
        "repository": str(shop.path),
        "commit": shop.main_2,
        "through": "prod",
        "base": shop.main_1,
        "manifest_file": "relay.yaml",
    }


def gitlab_push(shop: Shop) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "before": shop.main_1,
        "after": shop.develop_1,
        "ref": "refs/heads/develop",
        "checkout_sha": shop.develop_1,
        "project": {
            "path_with_namespace": "mike/diaspora",
            "git_http_url": "http://127.0.0.1:1/mike/diaspora.git",
        },
        "commits": [{"id": shop.develop_1, "added": ["services/orders/CHANGES"]}],
    }


def test_a_gitlab_push_starts_a_release_and_a_wrong_token_nothing(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    def post(token: str, key: str) -> httpx.Response:
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token, "Idempotency-Key": key}
        return httpx.post(f"{url}/gitlab", json=gitlab_push(shop), headers=headers, timeout=60)

    forged = post("guessed-token", str(uuid.uuid4()))
    assert forged.status_code == 401
    assert deployment.runs() == []

    key = str(uuid.uuid4())
    answer = post(TOKEN, key)

    assert answer.json()["status_url"] == f"/deliveries/gitlab/{key}"
    assert settled(url, answer)["state"] == "started"
    [run] = deployment.runs()
    assert run.parameters["through"] == "dev" and run.parameters["commit"] == shop.develop_1
    assert run.parameters["repository"] == str(shop.path)  # the configured url, not the payload's
    assert run.idempotency_key == f"gitlab:{key}"


def test_the_status_of_an_unknown_delivery_is_404(url: str) -> None:
    unknown = httpx.get(f"{url}/deliveries/github/{uuid.uuid4()}", timeout=10)
    forge = httpx.get(f"{url}/deliveries/bitbucket/{uuid.uuid4()}", timeout=10)

    assert unknown.status_code == 404 and unknown.json()["reason"] == "no such delivery"
    assert forge.status_code == 404


# --- several receivers, one PostgreSQL database -----------------------------------------------


def test_a_redelivery_to_another_receiver_sharing_the_database_starts_nothing(
    shop: Shop, deployment: Deployment, tmp_path: Path, postgres_url: str
) -> None:
    """Receivers A and B (each its own app, uvicorn server, dispatcher and checkouts) share
    one PostgreSQL database. GitHub sends a delivery to A, and its redelivery reaches B."""
    a = settings_for(shop, deployment, tmp_path / "a", database=postgres_url)
    b = settings_for(shop, deployment, tmp_path / "b", database=postgres_url)
    delivery = str(uuid.uuid4())
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)

    with served(a) as url_a, served(b) as url_b:
        first = post_github(url_a, "push", payload, delivery=delivery)
        redelivered = post_github(url_b, "push", payload, delivery=delivery)
        status = settled(url_b, first)  # B sees what A's (or B's) dispatcher did

    assert first.status_code == 202, first.text
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["reason"] == "duplicate delivery"
    assert status["state"] == "started", status
    runs = deployment.runs()
    assert [str(r.id) for r in runs] == [status["flow_run_id"]]
    assert runs[0].idempotency_key == f"github:{delivery}"


def test_copies_sent_to_two_receivers_at_once_start_one_run(
    shop: Shop, deployment: Deployment, tmp_path: Path, postgres_url: str
) -> None:
    a = settings_for(shop, deployment, tmp_path / "a", database=postgres_url)
    b = settings_for(shop, deployment, tmp_path / "b", database=postgres_url)
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)
    deliveries = [str(uuid.uuid4()) for _ in range(10)]

    with served(a) as url_a, served(b) as url_b:
        answers: dict[str, list[httpx.Response]] = {d: [] for d in deliveries}

        def send(url: str, delivery: str) -> None:
            answers[delivery].append(post_github(url, "push", payload, delivery=delivery))

        threads = [
            threading.Thread(target=send, args=(url, d))
            for d in deliveries
            for url in (url_a, url_b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        statuses = [
            settled(url_a, next(r for r in answers[d] if r.status_code == 202)) for d in deliveries
        ]

    for delivery in deliveries:
        assert sorted(r.status_code for r in answers[delivery]) == [200, 202], delivery
    assert all(s["state"] == "started" for s in statuses), statuses
    runs = deployment.runs()
    assert sorted(r.idempotency_key or "" for r in runs) == sorted(
        f"github:{d}" for d in deliveries
    )
    assert {str(r.id) for r in runs} == {s["flow_run_id"] for s in statuses}


def test_a_delivery_left_by_a_dead_receiver_is_taken_over_when_its_lease_lapses(
    shop: Shop, deployment: Deployment, tmp_path: Path, postgres_url: str
) -> None:
    """A receiver stored a delivery and claimed it, then died: B starts it after the lease."""
    delivery = str(uuid.uuid4())
    trigger = parse_github(
        "push",
        push(shop, "refs/heads/develop", shop.main_1, shop.develop_1),
        delivery=delivery,
    )
    assert isinstance(trigger, Trigger)
    dead = Deliveries(postgres_url)
    assert dead.enqueue(f"github:{delivery}", trigger_to_json(trigger))
    assert len(dead.claim("dead-receiver", lease_seconds=2, limit=1)) == 1
    b = settings_for(shop, deployment, tmp_path / "b", database=postgres_url)

    with served(b) as url_b:
        time.sleep(1)
        held = httpx.get(f"{url_b}/deliveries/github/{delivery}", timeout=10).json()
        deadline = time.monotonic() + 30
        while (status := dead.status(f"github:{delivery}")) is not None and (
            status.state == "queued"
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)

    assert held["state"] == "queued"  # the dead receiver's lease still held it
    assert status is not None and status.state == "started", status
    [run] = deployment.runs()
    assert str(run.id) == status.flow_run_id


# --- queued, then ignored or failed: no run --------------------------------------------------


def test_a_branch_no_environment_listens_to_is_queued_then_ignored(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    payload = push(shop, "refs/heads/feature-x", ZERO_SHA, shop.main_1)

    status = settled(url, post_github(url, "push", payload))

    assert status["state"] == "ignored", status
    assert "no environment in relay.yaml at" in status["reason"]
    assert "set `branch: feature-x` on one" in status["reason"]
    assert status["flow_run_id"] is None
    assert deployment.runs() == []


def test_an_invalid_manifest_is_ignored_naming_every_problem(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    payload = push(shop, "refs/heads/develop", ZERO_SHA, shop.broken)

    status = settled(url, post_github(url, "push", payload))

    assert status["state"] == "ignored", status
    assert f"relay.yaml at {shop.broken[:12]} is invalid" in status["reason"]
    assert "services.payments.port: 8003 is already used" in status["reason"]
    assert str(shop.path) not in json.dumps(status)  # no server paths in the answer
    assert deployment.runs() == []


def test_a_commit_that_cannot_be_fetched_is_retried_then_failed_and_a_redelivery_requeues_it(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    delivery = str(uuid.uuid4())
    payload = push(shop, "refs/heads/develop", ZERO_SHA, "d" * 40)

    status = settled(url, post_github(url, "push", payload, delivery=delivery))

    assert status["state"] == "failed", status
    assert "cannot fetch commit dddddddddddd" in status["reason"]
    assert "gave up after 3 attempts" in status["reason"]
    assert status["attempts"] == 2  # two put off, the third gave up
    assert deployment.runs() == []
    again = post_github(url, "push", payload, delivery=delivery)
    assert again.status_code == 202, again.text  # the forge's "Redeliver" tries it again
    assert settled(url, again)["state"] == "failed"


def test_a_missing_deployment_is_retried_then_failed(
    shop: Shop, deployment: Deployment, tmp_path: Path
) -> None:
    wrong = settings_for(shop, deployment, tmp_path / "state")
    wrong = wrong.model_copy(update={"deployment": f"release/missing-{uuid.uuid4().hex[:8]}"})
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)

    with served(wrong) as url:
        status = settled(url, post_github(url, "push", payload))

    assert status["state"] == "failed", status
    assert "does not exist on the Prefect server" in status["reason"]
    assert status["environment"] is None and status["flow_run_id"] is None


# --- refused or ignored when received: nothing queued ------------------------------------------


def _cases(shop: Shop) -> dict[str, tuple[dict[str, Any], int, str]]:
    """Case -> (keyword arguments of post_github, status, a part of the reason)."""
    develop = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)
    stranger = copy.deepcopy(develop)
    stranger["repository"]["full_name"] = "someone/else"
    return {
        "forged-signature": (
            {"event": "push", "payload": develop, "signature": sign(b"{}", "guessed")},
            401,
            "X-Hub-Signature-256 is wrong",
        ),
        "malformed-json-unsigned": (
            {"event": "push", "payload": b"{not json", "signature": None},
            401,
            "X-Hub-Signature-256 is missing",  # authenticated before anything is parsed
        ),
        "signed-with-another-secret": (
            {"event": "push", "payload": develop, "signature": "sha256=" + "0" * 64},
            401,
            "X-Hub-Signature-256 is wrong",
        ),
        "missing-signature": (
            {"event": "push", "payload": develop, "signature": None},
            401,
            "X-Hub-Signature-256 is missing",
        ),
        "tag-deletion": ({"event": "push", "payload": sample("push")}, 200, "was deleted"),
        "ping": ({"event": "ping", "payload": sample("ping")}, 200, "pong"),
        "unknown-repository": (
            {"event": "push", "payload": stranger},
            200,
            "repository 'someone/else' is not served by this relay",
        ),
        "pull-request-closed-unmerged": (
            {"event": "pull_request", "payload": sample("pull_request.closed")},
            200,
            "closed without merging",
        ),
        "pull-request-opened": (
            {"event": "pull_request", "payload": sample("pull_request.opened")},
            200,
            "was opened; only a merge releases",
        ),
        "delivery-id-too-long": (
            {"event": "push", "payload": develop, "delivery": "x" * 201},
            400,
            "the delivery id is over 200 characters",
        ),
        "delivery-id-with-a-path": (
            {"event": "push", "payload": develop, "delivery": "../x"},
            400,
            "the delivery id may hold only letters, digits",
        ),
        "malformed-json": (
            {"event": "push", "payload": b'{"ref": "refs/heads/develop", '},
            400,
            "not valid JSON",
        ),
        "malformed-payload": (
            {"event": "push", "payload": {"ref": "refs/heads/develop"}},
            400,
            "malformed GitHub push payload",
        ),
        "missing-event-header": (
            {"event": None, "payload": develop},
            400,
            "X-GitHub-Event header is missing",
        ),
        "unhandled-event": (
            {"event": "create", "payload": sample("create")},
            400,
            "'create' is not handled",
        ),
        "missing-delivery-header": (
            {"event": "push", "payload": develop, "headers": {"X-GitHub-Delivery": ""}},
            400,
            "X-GitHub-Delivery header is missing",
        ),
    }


CASES = [
    "forged-signature",
    "signed-with-another-secret",
    "missing-signature",
    "malformed-json-unsigned",
    "tag-deletion",
    "ping",
    "unknown-repository",
    "pull-request-closed-unmerged",
    "pull-request-opened",
    "delivery-id-too-long",
    "malformed-json",
    "malformed-payload",
    "missing-event-header",
    "unhandled-event",
    "missing-delivery-header",
]


@pytest.mark.parametrize("case", CASES)
def test_deliveries_that_queue_nothing(
    case: str, shop: Shop, deployment: Deployment, settings: WebhookSettings, url: str
) -> None:
    kwargs, status, reason = _cases(shop)[case]
    delivery = kwargs.setdefault("delivery", str(uuid.uuid4()))

    answer = post_github(url, **kwargs)

    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == ("ignored" if status == 200 else "rejected")
    assert reason in body["reason"]
    assert Deliveries(settings.database).status(f"github:{delivery}") is None
    assert deployment.runs() == []


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("content-length", "the limit is 4000"),  # refused by the header, before reading
        ("chunked", "the body is over 4000 bytes"),  # no length given: refused while reading
    ],
)
def test_an_oversized_body_is_refused(
    how: str, reason: str, shop: Shop, deployment: Deployment, tmp_path: Path
) -> None:
    small = settings_for(shop, deployment, tmp_path / "state", max_body_bytes=4_000)
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)
    body = json.dumps(payload).encode()
    assert len(body) > 4_000
    content: Any = body if how == "content-length" else iter([body[:3000], body[3000:]])
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body),
    }

    with served(small) as url:
        answer = httpx.post(f"{url}/github", content=content, headers=headers, timeout=60)

    assert answer.status_code == 413, answer.text
    assert reason in answer.json()["reason"]
    assert deployment.runs() == []


def test_a_form_encoded_delivery_is_read_like_json(url: str) -> None:
    """GitHub's other content type: `payload=<url-encoded JSON>`, signed as sent."""
    body = urlencode({"payload": json.dumps(sample("ping"))}).encode()

    answer = post_github(
        url, "ping", body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["reason"] == "pong"


def test_repository_names_match_case_insensitively(
    shop: Shop, deployment: Deployment, url: str
) -> None:
    payload = push(shop, "refs/heads/develop", shop.main_1, shop.develop_1)
    payload["repository"]["full_name"] = REPOSITORY.upper()

    assert settled(url, post_github(url, "push", payload))["state"] == "started"
    assert len(deployment.runs()) == 1


def test_healthz(url: str) -> None:
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}


# --- settings --------------------------------------------------------------------------------


def test_settings_take_secrets_from_the_environment_and_the_rest_from_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "webhooks.yaml"
    config.write_text(
        f"repositories:\n  {REPOSITORY}:\n    url: /srv/git/hello.git\n"
        f"deployment: release/staging-line\nstate_dir: {tmp_path / 'state'}\n"
    )

    monkeypatch.delenv("RELAY_DATABASE_URL", raising=False)  # a stack on PostgreSQL sets it
    loaded = WebhookSettings.load(config, {"RELAY_GITHUB_WEBHOOK_SECRET": "from-env"})

    assert loaded.github_secret is not None
    assert loaded.github_secret.get_secret_value() == "from-env"
    assert loaded.gitlab_token is None
    assert loaded.repositories[REPOSITORY] == RepositoryTarget(url="/srv/git/hello.git")
    assert loaded.deployment == "release/staging-line"
    assert loaded.database == str(tmp_path / "state" / "deliveries.db")
    assert "from-env" not in repr(loaded)


def test_the_database_defaults_to_relay_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://relay:hunter2@db.internal:5432/relay"
    monkeypatch.setenv("RELAY_DATABASE_URL", url)

    from_env = WebhookSettings(state_dir=tmp_path)
    named = WebhookSettings(state_dir=tmp_path, database=str(tmp_path / "queue.db"))

    assert from_env.database == url
    assert "hunter2" not in repr(from_env)
    assert named.database == str(tmp_path / "queue.db")


def test_settings_read_a_prefect_secret_block(tmp_path: Path) -> None:
    name = f"webhook-test-{uuid.uuid4().hex[:8]}"
    Secret(value="from-a-block").save(name)
    try:
        loaded = WebhookSettings.load(None, {"RELAY_GITHUB_WEBHOOK_SECRET_BLOCK": name})
        assert loaded.github_secret is not None
        assert loaded.github_secret.get_secret_value() == "from-a-block"
        with pytest.raises(TerminalError, match="cannot read the Prefect Secret block"):
            WebhookSettings.load(None, {"RELAY_GITLAB_WEBHOOK_TOKEN_BLOCK": name + "-missing"})
    finally:
        with get_client(sync_client=True) as client:
            client.delete_block_document(Secret.load(name)._block_document_id)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("github_secret: hunter2\n", "secrets never come from a file"),
        ("repositories: {a/b: {}}\n", "repositories.a/b.url: Field required"),
        ("max_body_bytes: 0\n", "max_body_bytes: Input should be greater than 0"),
        ("repositorys: {}\n", "repositorys: Extra inputs are not permitted"),
    ],
    ids=["secret-in-file", "no-url", "zero-limit", "typo"],
)
def test_bad_settings_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "webhooks.yaml"
    config.write_text(text)

    with pytest.raises(TerminalError, match=message):
        WebhookSettings.load(config, {})


# --- the command -----------------------------------------------------------------------------


def test_relay_webhook_serve(tmp_path: Path, shop: Shop) -> None:
    config = tmp_path / "webhooks.yaml"
    config.write_text(
        f"repositories:\n  {REPOSITORY}:\n    url: {shop.path}\nstate_dir: {tmp_path / 'state'}\n"
    )
    port = free_port()
    env = {**os.environ, "RELAY_GITHUB_WEBHOOK_SECRET": SECRET}
    command = [sys.executable, "-m", "deployments.cli", "webhook", "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "relay webhook serve did not answer"
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        answer = post_github(url, "ping", sample("ping"))
        assert answer.status_code == 200 and answer.json()["reason"] == "pong"
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert SECRET not in output  # logs never show the secret
    assert "github delivery" in output and "pong" in output

    no_secret = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_GITHUB_")}
    refused = subprocess.run(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env={k: v for k, v in no_secret.items() if not k.startswith("RELAY_GITLAB_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "no webhook secret is configured" in refused.stderr
