"""relay/webhooks.py: signatures, payloads (GitHub's real samples), deliveries, branches."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.errors import ManifestError
from relay.manifest import parse_manifest
from relay.webhooks import (
    IGNORED,
    QUEUED,
    STARTED,
    ZERO_SHA,
    Deliveries,
    Ignored,
    Trigger,
    UnsupportedEvent,
    environment_for_branch,
    parse_github,
    parse_gitlab,
    trigger_from_json,
    trigger_to_json,
    verify_github,
    verify_gitlab,
)

# GitHub's own sample payloads (its webhook documentation), kept in the repository.
PAYLOADS = Path(__file__).resolve().parents[1] / "data" / "webhook-payloads" / "github"

SECRET = b"It's a Secret to Everybody"
BODY = b'{"zen": "Design for failure."}'
SHA_A = "a" * 40
SHA_B = "b" * 40


def sample(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.payload.json").read_text())


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# --- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "body", "header", "expected"),
    [
        pytest.param(SECRET, BODY, signature(SECRET, BODY), True, id="good"),
        pytest.param(SECRET, BODY, signature(SECRET, BODY).upper().replace("SHA256=", "sha256="),
                     True, id="good-uppercase-hex"),
        pytest.param(SECRET, BODY, signature(b"guessed", BODY), False, id="forged-other-secret"),
        pytest.param(SECRET, BODY + b" ", signature(SECRET, BODY), False, id="body-changed"),
        pytest.param(SECRET, BODY, None, False, id="missing"),
        pytest.param(SECRET, BODY, "", False, id="empty"),
        pytest.param(
            SECRET, BODY, signature(SECRET, BODY).replace("sha256=", "sha1="), False,
            id="wrong-prefix",
        ),
        pytest.param(SECRET, BODY, signature(SECRET, BODY)[7:], False, id="no-prefix"),
        pytest.param(SECRET, BODY, "sha256=ünïcode", False, id="non-ascii"),
        pytest.param(b"", BODY, signature(b"", BODY), False, id="empty-secret-verifies-nothing"),
    ],
)  # fmt: skip
def test_verify_github(secret: bytes, body: bytes, header: str | None, expected: bool) -> None:
    assert verify_github(secret, body, header) is expected


def test_verify_github_over_a_real_payload_body() -> None:
    body = (PAYLOADS / "push.with-new-branch.payload.json").read_bytes()
    assert verify_github(SECRET, body, signature(SECRET, body))
    assert not verify_github(SECRET, body.replace(b"master", b"mister"), signature(SECRET, body))


@pytest.mark.parametrize(
    ("secret", "header", "expected"),
    [
        ("s3cr3t-token", "s3cr3t-token", True),
        ("s3cr3t-token", "s3cr3t-tokem", False),
        ("s3cr3t-token", "s3cr3t-token ", False),
        ("s3cr3t-token", None, False),
        ("s3cr3t-token", "", False),
        ("s3cr3t-token", "tökën", False),
        ("", "", False),
    ],
    ids=["good", "wrong", "trailing-space", "missing", "empty", "non-ascii", "empty-secret"],
)
def test_verify_gitlab(secret: str, header: str | None, expected: bool) -> None:
    assert verify_gitlab(secret, header) is expected


# --- GitHub payloads, the real samples ---------------------------------------------------------


def test_a_pushed_tag_deletion_is_ignored() -> None:
    payload = sample("push")
    assert payload["ref"] == "refs/tags/simple-tag" and payload["deleted"] is True

    result = parse_github("push", payload)

    assert result == Ignored("refs/tags/simple-tag was deleted; there is nothing to release")


def test_a_push_that_creates_a_branch_releases_everything() -> None:
    result = parse_github("push", sample("push.with-new-branch"), delivery="d-1")

    assert result == Trigger(
        repository="Codertocat/Hello-World",
        clone_url="https://github.com/Codertocat/Hello-World.git",
        branch="master",
        before=None,
        after="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        changed_files=["README.md"],
        delivery="d-1",
    )


def test_a_push_to_an_existing_branch_keeps_before() -> None:
    payload = sample("push.with-new-branch")
    payload.update(before=SHA_A, created=False)

    result = parse_github("push", payload)

    assert isinstance(result, Trigger) and result.before == SHA_A


DELETED = "refs/heads/old was deleted; there is nothing to release"


@pytest.mark.parametrize(
    ("ref", "deleted", "after", "reason"),
    [
        (
            "refs/tags/v1.0",
            False,
            SHA_A,
            "tag 'v1.0' was pushed; Relay releases branches, not tags",
        ),
        ("refs/heads/old", True, ZERO_SHA, DELETED),
        ("refs/heads/old", False, ZERO_SHA, DELETED),
        ("refs/notes/x", False, SHA_A, "'refs/notes/x' is not a branch; Relay releases branches"),
    ],
    ids=["tag", "branch-deleted", "after-all-zeros", "not-a-branch"],
)
def test_pushes_that_release_nothing(ref: str, deleted: bool, after: str, reason: str) -> None:
    payload = sample("push.with-new-branch")
    payload.update(ref=ref, deleted=deleted, after=after)

    assert parse_github("push", payload) == Ignored(reason)


def test_the_closed_pull_request_sample_is_not_merged_so_it_is_ignored() -> None:
    payload = sample("pull_request.closed")
    assert payload["pull_request"]["merged"] is False  # the sample closes without merging

    assert parse_github("pull_request", payload) == Ignored(
        "pull request #2 was closed without merging"
    )


def test_a_merged_pull_request_releases_its_base_branch() -> None:
    payload = sample("pull_request.closed")
    payload["pull_request"]["merged"] = True

    result = parse_github("pull_request", payload, delivery="d-2")

    pr = payload["pull_request"]
    assert result == Trigger(
        repository="Codertocat/Hello-World",
        clone_url="https://github.com/Codertocat/Hello-World.git",
        branch="master",
        before=pr["base"]["sha"],
        after=pr["merge_commit_sha"],
        changed_files=[],
        delivery="d-2",
    )


def test_an_opened_pull_request_is_ignored() -> None:
    assert parse_github("pull_request", sample("pull_request.opened")) == Ignored(
        "pull request #2 was opened; only a merge releases"
    )


def test_ping_is_answered_with_pong() -> None:
    assert parse_github("ping", sample("ping")) == Ignored("pong")


def test_an_event_relay_does_not_handle_names_what_to_subscribe_to() -> None:
    with pytest.raises(UnsupportedEvent, match="'create' is not handled; subscribe the webhook"):
        parse_github("create", sample("create"))


def test_changed_files_are_every_commits_files_once_in_order() -> None:
    payload = {
        "ref": "refs/heads/main",
        "before": SHA_A,
        "after": SHA_B,
        "deleted": False,
        "repository": {"full_name": "acme/shop", "clone_url": "https://git.example/shop.git"},
        "commits": [
            {"added": ["a.py"], "modified": ["b.py"], "removed": []},
            {"added": [], "modified": ["b.py", "c.py"], "removed": ["d.py"]},
            {"message": "no file lists at all"},
        ],
    }

    result = parse_github("push", payload)

    assert isinstance(result, Trigger)
    assert result.changed_files == ["a.py", "b.py", "c.py", "d.py"]


# --- malformed payloads ------------------------------------------------------------------------


REMOVE = object()


def changed(payload: dict[str, Any], *changes: tuple[str, Any]) -> dict[str, Any]:
    """A deep copy of `payload` with each dotted path set to a value, or removed (REMOVE)."""
    payload = copy.deepcopy(payload)
    for dotted, value in changes:
        *parents, last = dotted.split(".")
        node = payload
        for part in parents:
            node = node[part]
        if value is REMOVE:
            del node[last]
        else:
            node[last] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("ref", REMOVE, "ref: missing; a GitHub push payload always has it"),
        ("repository.full_name", REMOVE, "repository.full_name: missing"),
        ("repository", "Hello-World", "repository.full_name: missing"),
        ("after", 42, "after: should be text, got a whole number 42"),
        ("after", "--upload-pack=x", "after: '--upload-pack=x' is not a commit id"),
        ("before", "6113728", "before: '6113728' is not a commit id"),
        ("deleted", "false", "deleted: should be true or false, got text 'false'"),
        ("commits", {}, "commits: should be a list, got an object"),
        ("commits", ["abc"], "commits[0]: should be an object, got text 'abc'"),
        ("commits", [{"added": "a.py"}], "commits[0].added: should be a list of file paths"),
    ],
    ids=[
        "no-ref",
        "no-repository-name",
        "repository-not-object",
        "after-int",
        "after-option",
        "before-short",
        "deleted-text",
        "commits-object",
        "commit-text",
        "added-text",
    ],
)
def test_a_malformed_push_raises_value_error_naming_the_field(
    path: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match="malformed GitHub push payload") as caught:
        parse_github("push", changed(sample("push.with-new-branch"), (path, value)))
    assert message in str(caught.value)


def test_every_problem_of_a_payload_is_reported_at_once() -> None:
    payload = changed(sample("push.with-new-branch"), ("after", None), ("ref", REMOVE))

    with pytest.raises(ValueError) as caught:
        parse_github("push", payload)

    text = str(caught.value)
    assert text.startswith("malformed GitHub push payload, 2 problems")
    assert "ref: missing" in text and "after: should be text, got null" in text


MERGED = ("pull_request.merged", True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([("action", REMOVE)], "action: missing"),
        ([("pull_request.merged", "yes")], "pull_request.merged: should be true or false"),
        ([MERGED, ("pull_request.merge_commit_sha", REMOVE)], "merge_commit_sha: missing"),
        ([MERGED, ("pull_request.base.ref", 7)], "base.ref: should be text, got a whole number 7"),
    ],
    ids=["no-action", "merged-text", "merged-without-merge-commit", "base-ref-number"],
)
def test_a_malformed_pull_request_raises_value_error(
    changes: list[tuple[str, Any]], message: str
) -> None:
    with pytest.raises(ValueError, match="malformed GitHub pull_request payload") as caught:
        parse_github("pull_request", changed(sample("pull_request.closed"), *changes))
    assert message in str(caught.value)


@pytest.mark.parametrize("payload", [[], "push", None, 3], ids=["list", "text", "null", "number"])
def test_a_payload_that_is_not_an_object_raises_value_error(payload: Any) -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_github("push", payload)
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_gitlab("Push Hook", payload)


# --- GitLab payloads (the shape of GitLab's documented Push Hook) -----------------------------

GITLAB_PUSH: dict[str, Any] = {
    "object_kind": "push",
    "event_name": "push",
    "before": SHA_A,
    "after": SHA_B,
    "ref": "refs/heads/develop",
    "ref_protected": True,
    "checkout_sha": SHA_B,
    "user_username": "jsmith",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
    },
    "commits": [
        {"id": SHA_B, "message": "fix", "added": ["CHANGELOG"], "modified": ["app/c.rb"],
         "removed": []},
    ],
    "total_commits_count": 1,
}  # fmt: skip


def test_a_gitlab_push_is_a_trigger() -> None:
    result = parse_gitlab("Push Hook", GITLAB_PUSH, delivery="uuid-1")

    assert result == Trigger(
        repository="mike/diaspora",
        clone_url="http://example.com/mike/diaspora.git",
        branch="develop",
        before=SHA_A,
        after=SHA_B,
        changed_files=["CHANGELOG", "app/c.rb"],
        delivery="uuid-1",
    )


@pytest.mark.parametrize(
    ("event", "changes", "expected"),
    [
        ("Push Hook", {"before": ZERO_SHA}, "trigger-without-before"),
        ("Push Hook", {"after": ZERO_SHA, "checkout_sha": None, "commits": []},
         Ignored("refs/heads/develop was deleted; there is nothing to release")),
        ("Push Hook", {"ref": "refs/tags/v2"},
         Ignored("tag 'v2' was pushed; Relay releases branches, not tags")),
        ("Tag Push Hook", {"ref": "refs/tags/v2"},
         Ignored("a tag was pushed; Relay releases branches, not tags")),
    ],
    ids=["new-branch", "deleted-branch", "tag-in-push-hook", "tag-push-hook"],
)  # fmt: skip
def test_gitlab_events(event: str, changes: dict[str, Any], expected: object) -> None:
    result = parse_gitlab(event, GITLAB_PUSH | changes)

    if expected == "trigger-without-before":
        assert isinstance(result, Trigger) and result.before is None
    else:
        assert result == expected


def test_gitlab_unsupported_event_and_malformed_payload() -> None:
    with pytest.raises(UnsupportedEvent, match="'Merge Request Hook' is not handled"):
        parse_gitlab("Merge Request Hook", GITLAB_PUSH)
    with pytest.raises(ValueError) as caught:
        parse_gitlab("Push Hook", changed(GITLAB_PUSH, ("checkout_sha", 5), ("project", REMOVE)))
    text = str(caught.value)
    assert "malformed GitLab Push Hook payload, 3 problems" in text
    assert "project.path_with_namespace: missing" in text
    assert "project.git_http_url: missing" in text
    assert "checkout_sha: should be text, got a whole number 5" in text


# --- deliveries ------------------------------------------------------------------------------

TRIGGER = Trigger("acme/shop", "https://git.example/acme/shop.git", "main", "a" * 40, "b" * 40)


class Clock:
    """A clock the test moves, so leases and delays lapse without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the queue is: a SQLite file, or a fresh database in the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "state" / "deliveries.db")
    return str(request.getfixturevalue("postgres_url"))


def test_a_delivery_is_queued_once_and_survives_a_restart(database: str) -> None:
    first = Deliveries(database)
    assert first.enqueue("github:72d3162e", trigger_to_json(TRIGGER)) is True
    assert first.enqueue("github:72d3162e", trigger_to_json(TRIGGER)) is False

    restarted = Deliveries(database)
    assert restarted.enqueue("github:72d3162e", "{}") is False
    assert restarted.enqueue("gitlab:72d3162e", "{}") is True
    stored = restarted.status("github:72d3162e")
    assert stored is not None and stored.state == QUEUED and stored.attempts == 0
    assert trigger_from_json(stored.trigger) == TRIGGER
    assert restarted.status("github:never-sent") is None


def test_a_claimed_delivery_records_its_run(database: str) -> None:
    deliveries = Deliveries(database)
    deliveries.enqueue("github:1", trigger_to_json(TRIGGER))

    [claimed] = deliveries.claim("a", lease_seconds=60, limit=10)
    deliveries.started("github:1", "run-1", "prod")

    assert claimed.id == "github:1" and claimed.state == QUEUED
    done = deliveries.status("github:1")
    assert done is not None
    assert (done.state, done.flow_run_id, done.environment) == (STARTED, "run-1", "prod")
    assert deliveries.claim("b", lease_seconds=60, limit=10) == []  # started is final
    assert deliveries.enqueue("github:1", "{}") is False  # and its redelivery a duplicate


def test_a_failed_delivery_is_queued_again_by_its_redelivery(database: str) -> None:
    deliveries = Deliveries(database)
    deliveries.enqueue("github:1", "{}")
    deliveries.enqueue("github:2", "{}")
    deliveries.claim("a", 60, 10)
    deliveries.retry_later("github:1", "Prefect answered 503", delay=0)
    deliveries.failed("github:1", "gave up")
    deliveries.ignored("github:2", "no environment listens")

    assert deliveries.enqueue("github:1", trigger_to_json(TRIGGER)) is True
    assert deliveries.enqueue("github:2", "{}") is False  # ignored is final: same commit

    again = deliveries.status("github:1")
    assert again is not None
    assert (again.state, again.attempts, again.reason) == (QUEUED, 0, None)
    assert [d.id for d in deliveries.claim("b", 60, 10)] == ["github:1"]
    ignored = deliveries.status("github:2")
    assert ignored is not None and ignored.state == IGNORED
    assert ignored.reason == "no environment listens"


def test_a_lapsed_lease_lets_another_worker_claim(database: str) -> None:
    clock = Clock()
    deliveries = Deliveries(database, clock=clock)
    deliveries.enqueue("github:1", "{}")

    assert len(deliveries.claim("a", lease_seconds=30, limit=10)) == 1
    clock.now += 29
    assert deliveries.claim("b", lease_seconds=30, limit=10) == []  # a's lease holds
    clock.now += 2  # a died: its lease lapses
    [taken] = deliveries.claim("b", lease_seconds=30, limit=10)

    assert taken.id == "github:1"


def test_retry_later_counts_the_attempt_and_waits_out_the_delay(database: str) -> None:
    clock = Clock()
    deliveries = Deliveries(database, clock=clock)
    deliveries.enqueue("github:1", "{}")
    deliveries.claim("a", 60, 10)

    deliveries.retry_later("github:1", "cannot fetch commit", delay=10)

    assert deliveries.claim("a", 60, 10) == []
    clock.now += 11
    [again] = deliveries.claim("b", 60, 10)
    assert (again.attempts, again.reason) == (1, "cannot fetch commit")


def test_claims_are_oldest_first_and_limited(database: str) -> None:
    clock = Clock()
    deliveries = Deliveries(database, clock=clock)
    for n in range(5):
        clock.now += 1
        deliveries.enqueue(f"github:{n}", "{}")

    first = deliveries.claim("a", 60, limit=2)
    rest = deliveries.claim("a", 60, limit=10)

    assert [d.id for d in first] == ["github:0", "github:1"]
    assert [d.id for d in rest] == ["github:2", "github:3", "github:4"]


def test_workers_racing_never_claim_one_delivery_twice(database: str) -> None:
    """Three workers in threads, each on connections of its own (SQLite: a connection per
    call; PostgreSQL: the engine's pool), claim until the queue is empty: every delivery is
    claimed exactly once."""
    Deliveries(database)
    ids = [f"github:{n}" for n in range(60)]
    for delivery_id in ids:
        Deliveries(database).enqueue(delivery_id, "{}")
    claims: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    barrier = threading.Barrier(len(claims))

    def work(worker: str) -> None:
        deliveries = Deliveries(database)
        barrier.wait()
        while True:
            taken = deliveries.claim(worker, lease_seconds=60, limit=3)
            if not taken:
                return
            claims[worker].extend(d.id for d in taken)

    threads = [threading.Thread(target=work, args=(w,)) for w in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    everything = [i for taken in claims.values() for i in taken]
    assert sorted(everything) == sorted(ids)  # each claimed once, none lost


def test_simultaneous_duplicates_queue_one(database: str) -> None:
    Deliveries(database)
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def deliver() -> None:
        deliveries = Deliveries(database)
        barrier.wait()
        results.append(deliveries.enqueue("github:same", "{}"))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results) == [False] * 15 + [True]


def test_an_empty_delivery_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="delivery id is empty"):
        Deliveries(tmp_path / "deliveries.db").enqueue("", "{}")


def test_a_database_url_is_shown_without_its_password() -> None:
    deliveries = Deliveries.__new__(Deliveries)
    deliveries.url = "postgresql+psycopg://relay:hunter2@db.internal:5432/relay"

    assert "hunter2" not in repr(deliveries)


# --- branches ----------------------------------------------------------------------------------

SERVICES = """\
app: shop
services:
  orders: {path: services/orders, port: 8002}
"""


def manifest(environments: str) -> Any:
    text = SERVICES + textwrap.dedent(environments)
    return parse_manifest(yaml.safe_load(text), Path("relay.yaml"))


@pytest.mark.parametrize(
    ("branch", "expected"),
    [("develop", "dev"), ("main", "prod"), ("staging", None), ("feature/x", None)],
)
def test_environment_for_branch(branch: str, expected: str | None) -> None:
    shop = manifest(
        """\
        environments:
          dev: {port_offset: 10000, branch: develop}
          staging: {port_offset: 12000}
          prod: {port_offset: 14000, branch: main}
        """
    )

    assert environment_for_branch(shop, branch) == expected


def test_a_branch_named_twice_releases_through_the_later_environment() -> None:
    shop = manifest(
        """\
        environments:
          dev: {port_offset: 10000, branch: main}
          staging: {port_offset: 12000, branch: main}
          prod: {port_offset: 14000}
        """
    )

    assert environment_for_branch(shop, "main") == "staging"


def test_without_branch_keys_no_environment_listens() -> None:
    shop = manifest("")

    assert all(env.branch is None for env in shop.environments.values())
    assert environment_for_branch(shop, "main") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("''", "environments.dev.branch: is empty; write a value, such as main"),
        ("7", "environments.dev.branch: Input should be a valid string (got 7)"),
    ],
)
def test_a_bad_branch_is_a_manifest_error(value: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        manifest(f"environments:\n  dev: {{port_offset: 10000, branch: {value}}}\n")
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
