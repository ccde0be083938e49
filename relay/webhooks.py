"""Git webhooks in Relay's terms: is a delivery genuine, what does it ask for, was it seen before.

This module holds the pure logic behind the webhook receiver (`deployments/webhooks.py`, the
HTTP side). It does no network I/O and never imports Prefect.

* `verify_github` and `verify_gitlab` check that a delivery really comes from the forge. They
  compare in constant time, and an empty secret matches nothing.
* `parse_github` and `parse_gitlab` turn an event into a `Trigger` (release this commit of this
  branch) or `Ignored` (a valid event that asks for nothing, with the reason). A payload that
  lacks a key, or has one of the wrong type, raises `ValueError`, which lists every problem
  found. An event Relay does not handle raises `UnsupportedEvent`, a `ValueError` that names
  the events to subscribe to.
* `Deliveries` is the durable queue of deliveries in Relay's database (SQLite or PostgreSQL):
  stored before the forge is answered, claimed under a lease by one receiver's dispatcher,
  then started, ignored or failed. A redelivery to any receiver sharing it is a duplicate.
* `environment_for_branch` finds the environment that a branch releases into, from the
  `branch:` keys of a `relay.yaml`.

What each event means:

    GitHub push          refs/heads/X  -> Trigger(branch X); `before` of all zeros (a new
                                          branch) -> before=None
                         refs/tags/X   -> Ignored (tags are not released)
                         deleted: true -> Ignored (nothing left to release)
    GitHub pull_request  closed + merged -> Trigger(branch=base.ref, before=base.sha,
                                            after=merge_commit_sha)
                         anything else   -> Ignored
    GitHub ping          -> Ignored("pong")
    GitLab Push Hook     as a GitHub push; a deletion has `after` all zeros and no
                         `checkout_sha`
    GitLab Tag Push Hook -> Ignored

Example:
    >>> parse_github("ping", {"zen": "Keep it logically awesome."})
    Ignored(reason='pong')
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from relay.database import guarded, open_database, shown, url_of, webhook_deliveries
from relay.manifest import Manifest

__all__ = [
    "GITHUB_EVENTS",
    "GITLAB_EVENTS",
    "ZERO_SHA",
    "FAILED",
    "IGNORED",
    "QUEUED",
    "STARTED",
    "Deliveries",
    "Delivery",
    "DeliveryState",
    "Ignored",
    "Trigger",
    "UnsupportedEvent",
    "environment_for_branch",
    "parse_github",
    "parse_gitlab",
    "trigger_from_json",
    "trigger_to_json",
    "verify_github",
    "verify_gitlab",
]

ZERO_SHA = "0" * 40
"""What a forge sends as `before` for a new branch and as `after` for a deleted one."""

GITHUB_EVENTS = ("push", "pull_request", "ping")
GITLAB_EVENTS = ("Push Hook", "Tag Push Hook")

_SIGNATURE_PREFIX = "sha256="
# A commit id: SHA-1 (40 hex digits), or SHA-256 (64) in repositories that use it. Checking it
# also means a payload can never pass an option such as `--upload-pack=...` to git.
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_BRANCH_PREFIX = "refs/heads/"
_TAG_PREFIX = "refs/tags/"

MISSING = "missing; a {source} {event} payload always has it"
WRONG_TYPE = "should be {expected}, got {got}"
NOT_A_COMMIT = "{value!r} is not a commit id; expected 40 (or 64) lowercase hex digits"
NOT_AN_OBJECT = "the payload is {got}, not a JSON object"
UNSUPPORTED = "{source} event {event!r} is not handled; subscribe the webhook to {events} only"


class UnsupportedEvent(ValueError):
    """An event type Relay does not handle: the webhook subscribes to more than it should."""


@dataclass(frozen=True)
class Trigger:
    """A valid event that asks Relay to release a commit of a branch.

    Attributes:
        repository: The repository's full name: `owner/name` on GitHub, `group/project` on
            GitLab. The receiver looks up where to clone from by this name.
        clone_url: Where the forge says the repository is. Relay clones from its own
            configuration instead, so a payload cannot steer the clone.
        branch: The branch that moved, without `refs/heads/`.
        before: The commit the branch pointed to before. None for a new branch, which means
            everything is new, so every service is released.
        after: The commit to release.
        changed_files: The files that the payload's commits added, modified or removed, in
            order and without repeats. Empty when the payload lists none, as a merged pull
            request's does. Forges truncate long lists (GitLab sends at most 20 commits), so
            the release computes its own diff from `before`; this field is for logs.
        delivery: The forge's delivery id, when the caller passed it in.
    """

    repository: str
    clone_url: str
    branch: str
    before: str | None
    after: str
    changed_files: list[str] = field(default_factory=list)
    delivery: str = ""


@dataclass(frozen=True)
class Ignored:
    """A valid event that asks for nothing. `reason` says why, for the forge's delivery log."""

    reason: str


# --- signatures ------------------------------------------------------------------------------


def verify_github(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` is GitHub's HMAC-SHA256 of the raw `body` under `secret`.

    Args:
        secret: The webhook's secret. When it is empty nothing verifies, so a relay without a
            secret accepts nothing.
        body: The request body exactly as received, before any parsing.
        header: The header's value, `sha256=<64 hex digits>`, or None when it is absent.

    Returns:
        True only when the signature matches. The comparison takes the same time for any
        wrong signature.
    """
    if not secret or header is None or not header.startswith(_SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    given = header.removeprefix(_SIGNATURE_PREFIX).strip().lower()
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def verify_gitlab(secret: str, header: str | None) -> bool:
    """Whether `X-Gitlab-Token` equals the webhook's secret token, compared in constant time.

    GitLab does not sign the body. It sends the token as it is, so the token must be long and
    random, and must only travel over HTTPS. An empty `secret` matches nothing.
    """
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret.encode("utf-8"), header.encode("utf-8", "replace"))


# --- payloads --------------------------------------------------------------------------------


_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "text",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    type(None): "null",
}


def _kind(kind: type) -> str:
    return _TYPE_NAMES.get(kind, kind.__name__)


def _got(value: object) -> str:
    """`value`'s type in words, with the value itself when it is short and scalar."""
    name = _kind(type(value))
    if isinstance(value, dict | list) or value is None:
        return name
    text = repr(value)
    return f"{name} {text if len(text) <= 60 else text[:57] + '...'}"


def _is(value: object, kind: type) -> bool:
    # bool is an int in Python; a number field must not take true/false.
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


class _Fields:
    """Reads dotted paths out of a payload and collects every problem before raising."""

    def __init__(self, source: str, event: str, payload: Mapping[str, Any]) -> None:
        self._source = source
        self._event = event
        self._payload = payload
        self.problems: list[str] = []

    def get(self, path: str, kind: type, *, nullable: bool = False) -> Any:
        node: Any = self._payload
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                self.problems.append(
                    f"{path}: {MISSING.format(source=self._source, event=self._event)}"
                )
                return None
            node = node[part]
        if node is None and nullable:
            return None
        if not _is(node, kind):
            message = WRONG_TYPE.format(expected=_kind(kind), got=_got(node))
            self.problems.append(f"{path}: {message}")
            return None
        return node

    def commit(self, path: str) -> str:
        """The commit id at `path`; "" after recording a problem (`check` then raises)."""
        return self.optional_commit(path, nullable=False) or ""

    def optional_commit(self, path: str, *, nullable: bool = True) -> str | None:
        value = self.get(path, str, nullable=nullable)
        if not isinstance(value, str):
            return None
        if not _COMMIT.fullmatch(value):
            self.problems.append(f"{path}: {NOT_A_COMMIT.format(value=value[:80])}")
            return None
        return value

    def changed_files(self, path: str) -> list[str]:
        """added + modified + removed of every commit in the list at `path`, without repeats.

        A commit without one of the three lists contributes nothing for it; a list of the
        wrong type is a problem.
        """
        commits = self.get(path, list)
        files: dict[str, None] = {}
        for index, commit in enumerate(commits or []):
            where = f"{path}[{index}]"
            if not isinstance(commit, Mapping):
                message = WRONG_TYPE.format(expected="an object", got=_got(commit))
                self.problems.append(f"{where}: {message}")
                continue
            for key in ("added", "modified", "removed"):
                names = commit.get(key, [])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    message = WRONG_TYPE.format(expected="a list of file paths", got=_got(names))
                    self.problems.append(f"{where}.{key}: {message}")
                    continue
                files.update(dict.fromkeys(names))
        return list(files)

    def check(self) -> None:
        if self.problems:
            count = len(self.problems)
            header = (
                f"malformed {self._source} {self._event} payload, "
                f"{count} problem{'' if count == 1 else 's'}"
            )
            raise ValueError("; ".join([header, *self.problems]))


def _as_payload(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValueError(NOT_AN_OBJECT.format(got=_got(payload)))
    return payload


def _ref_decision(ref: str, deleted: bool) -> Ignored | str:
    """The branch a push moved, or why the push is ignored."""
    if deleted:
        return Ignored(f"{ref} was deleted; there is nothing to release")
    if ref.startswith(_TAG_PREFIX):
        tag = ref.removeprefix(_TAG_PREFIX)
        return Ignored(f"tag {tag!r} was pushed; Relay releases branches, not tags")
    if not ref.startswith(_BRANCH_PREFIX) or ref == _BRANCH_PREFIX:
        return Ignored(f"{ref!r} is not a branch; Relay releases branches")
    return ref.removeprefix(_BRANCH_PREFIX)


def _before(sha: str | None) -> str | None:
    return None if sha is None or sha == ZERO_SHA else sha


def parse_github(event: str, payload: dict[str, Any], *, delivery: str = "") -> Trigger | Ignored:
    """What a GitHub webhook delivery asks for.

    Args:
        event: The `X-GitHub-Event` header: `push`, `pull_request` or `ping`.
        payload: The delivery's JSON body.
        delivery: The `X-GitHub-Delivery` header, copied into the trigger.

    Returns:
        A `Trigger` for a branch push or a merged pull request, else `Ignored` with the reason.

    Raises:
        UnsupportedEvent: For any other event.
        ValueError: When the payload lacks a key, or has one of the wrong type; the message
            lists every problem.
    """
    if event == "ping":
        return Ignored("pong")
    if event not in GITHUB_EVENTS:
        events = "push and pull_request"
        raise UnsupportedEvent(UNSUPPORTED.format(source="GitHub", event=event, events=events))
    data = _as_payload(payload)
    fields = _Fields("GitHub", event, data)
    repository = fields.get("repository.full_name", str)
    clone_url = fields.get("repository.clone_url", str)
    if event == "push":
        return _github_push(fields, repository, clone_url, delivery)
    return _github_pull_request(fields, repository, clone_url, delivery)


def _github_push(
    fields: _Fields, repository: str, clone_url: str, delivery: str
) -> Trigger | Ignored:
    ref = fields.get("ref", str)
    deleted = fields.get("deleted", bool)
    before = fields.commit("before")
    after = fields.commit("after")
    changed = fields.changed_files("commits")
    fields.check()
    decision = _ref_decision(ref, deleted or after == ZERO_SHA)
    if isinstance(decision, Ignored):
        return decision
    return Trigger(repository, clone_url, decision, _before(before), after, changed, delivery)


def _github_pull_request(
    fields: _Fields, repository: str, clone_url: str, delivery: str
) -> Trigger | Ignored:
    action = fields.get("action", str)
    number = fields.get("pull_request.number", int)
    merged = fields.get("pull_request.merged", bool)
    fields.check()
    if action != "closed":
        return Ignored(f"pull request #{number} was {action}; only a merge releases")
    if not merged:
        return Ignored(f"pull request #{number} was closed without merging")
    branch = fields.get("pull_request.base.ref", str)
    before = fields.commit("pull_request.base.sha")
    after = fields.commit("pull_request.merge_commit_sha")
    fields.check()
    return Trigger(repository, clone_url, branch, _before(before), after, [], delivery)


def parse_gitlab(event: str, payload: dict[str, Any], *, delivery: str = "") -> Trigger | Ignored:
    """What a GitLab webhook delivery asks for.

    Args:
        event: The `X-Gitlab-Event` header: `Push Hook` or `Tag Push Hook`.
        payload: The delivery's JSON body.
        delivery: The delivery's id (`Idempotency-Key`, else `X-Gitlab-Event-UUID`), copied
            into the trigger.

    Returns:
        A `Trigger` for a branch push, else `Ignored` with the reason.

    Raises:
        UnsupportedEvent: For any other event.
        ValueError: When the payload lacks a key, or has one of the wrong type; the message
            lists every problem.
    """
    if event == "Tag Push Hook":
        return Ignored("a tag was pushed; Relay releases branches, not tags")
    if event not in GITLAB_EVENTS:
        raise UnsupportedEvent(
            UNSUPPORTED.format(source="GitLab", event=event, events="Push events")
        )
    data = _as_payload(payload)
    fields = _Fields("GitLab", event, data)
    repository = fields.get("project.path_with_namespace", str)
    clone_url = fields.get("project.git_http_url", str)
    ref = fields.get("ref", str)
    before = fields.commit("before")
    after = fields.commit("after")
    checkout_sha = fields.optional_commit("checkout_sha")
    changed = fields.changed_files("commits")
    fields.check()
    decision = _ref_decision(ref, after == ZERO_SHA or checkout_sha is None)
    if isinstance(decision, Ignored):
        return decision
    return Trigger(repository, clone_url, decision, _before(before), after, changed, delivery)


# --- branches and environments ---------------------------------------------------------------


def environment_for_branch(manifest: Manifest, branch: str) -> str | None:
    """The environment that pushes to `branch` release into, or None when none listens to it.

    When several environments name the same branch, the last one in promotion order wins: a
    release goes through every environment up to its target, so it reaches all of them.
    """
    found = None
    for name, environment in manifest.environments.items():
        if environment.branch == branch:
            found = name
    return found


# --- deliveries ------------------------------------------------------------------------------

QUEUED: Final = "queued"
STARTED: Final = "started"
IGNORED: Final = "ignored"
FAILED: Final = "failed"
DeliveryState = Literal["queued", "started", "ignored", "failed"]


def trigger_to_json(trigger: Trigger) -> str:
    """The trigger as the queue stores it: what the dispatcher needs to act on it later."""
    return json.dumps(asdict(trigger), sort_keys=True)


def trigger_from_json(text: str) -> Trigger:
    """The trigger `trigger_to_json` stored."""
    return Trigger(**json.loads(text))


@dataclass(frozen=True)
class Delivery:
    """One row of the queue: a delivery and what became of it.

    Attributes:
        id: `<forge>:<delivery id>`, also the idempotency key of the run it creates.
        state: queued (waiting, or being worked on under a lease), started (its run exists),
            ignored (nothing to release; `reason` says why) or failed (gave up; `reason`).
        trigger: The stored `Trigger` as JSON (`trigger_from_json`).
        attempts: How many tries were put off for later (`retry_later`) since it was queued.
        environment: The environment its run releases through, once started.
        flow_run_id: The run it created, once started.
        reason: Why it was ignored or failed, or why the last try was put off.
    """

    id: str
    state: DeliveryState
    trigger: str
    attempts: int
    environment: str | None
    flow_run_id: str | None
    reason: str | None
    received_at: float


class Deliveries:
    """The durable queue of webhook deliveries, in Relay's database (`webhook_deliveries`).

    A receiver stores a delivery (`enqueue`) before it answers the forge, so an answer of 202
    means the delivery survives the receiver and a busy Prefect server. Dispatchers, one per
    receiver, `claim` queued deliveries under a lease and record the outcome. Every receiver
    pointed at the same database (a PostgreSQL URL) shares the queue: a redelivery to any of
    them is a duplicate, a delivery is claimed by one of them at a time, and the claim of a
    receiver that died lapses with its lease.

    Each method is one short transaction on the engine's own connections, so one instance is
    safe to share between threads; run it in a thread from async code.

    Example:
        >>> deliveries = Deliveries(Path("/tmp/deliveries.db"))  # doctest: +SKIP
        >>> deliveries.enqueue("github:72d3162e", trigger_to_json(trigger))  # doctest: +SKIP
        True
        >>> deliveries.enqueue("github:72d3162e", trigger_to_json(trigger))  # doctest: +SKIP
        False
    """

    def __init__(self, where: Path | str, clock: Callable[[], float] = time.time) -> None:
        """Open (and migrate) the database at `where`: a SQLite path or a database URL.

        Raises:
            TerminalError: `where` is not a database Relay can use.
            TransientError: The database did not answer.
        """
        self.url = url_of(where)
        self.engine = open_database(where)
        self._clock = clock

    def __repr__(self) -> str:
        return f"Deliveries({shown(self.url)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with guarded(self.url), self.engine.begin() as conn:
            yield conn

    def enqueue(self, delivery_id: str, trigger_json: str) -> bool:
        """Store a delivery as queued; False when its id was stored before (a duplicate).

        A delivery that failed is queued again by its redelivery (its attempts start over): a
        forge's "Redeliver" button is how a person retries it. One statement decides either
        way, so of two copies arriving at once only one is queued.
        """
        if not delivery_id:
            raise ValueError("a delivery id is empty; pass the forge's delivery header")
        now = self._clock()
        row = {
            "id": delivery_id,
            "received_at": now,
            "state": QUEUED,
            "trigger": trigger_json,
            "attempts": 0,
            "updated_at": now,
        }
        insert = _insert_new(self.engine.dialect.name, row)
        with self._transaction() as conn:
            if conn.execute(insert).first() is not None:
                return True
            requeued = conn.execute(
                _deliveries.update()
                .where(_deliveries.c.id == delivery_id, _deliveries.c.state == FAILED)
                .values(
                    state=QUEUED,
                    trigger=trigger_json,
                    attempts=0,
                    claimed_by=None,
                    claimed_until=None,
                    reason=None,
                    updated_at=now,
                )
            )
            return requeued.rowcount == 1

    def claim(self, worker: str, lease_seconds: float, limit: int) -> list[Delivery]:
        """Up to `limit` queued deliveries that no live lease holds, now leased to `worker`.

        Each is taken by a conditional UPDATE of its own row (still queued, lease lapsed); the
        database applies those one at a time, so when two workers race for a row only one
        UPDATE changes it, and only that worker gets it. Oldest first.
        """
        now = self._clock()
        free = sa.and_(
            _deliveries.c.state == QUEUED,
            sa.or_(_deliveries.c.claimed_until.is_(None), _deliveries.c.claimed_until < now),
        )
        with self._transaction() as conn:
            candidates = conn.execute(
                sa.select(_deliveries.c.id)
                .where(free)
                .order_by(_deliveries.c.received_at)
                .limit(limit)
            ).scalars()
            ids = list(candidates)
        claimed: list[Delivery] = []
        for delivery_id in ids:
            with self._transaction() as conn:
                taken = conn.execute(
                    _deliveries.update()
                    .where(_deliveries.c.id == delivery_id, free)
                    .values(claimed_by=worker, claimed_until=now + lease_seconds, updated_at=now)
                )
                if taken.rowcount == 1:
                    row = conn.execute(
                        sa.select(_deliveries).where(_deliveries.c.id == delivery_id)
                    ).one()
                    claimed.append(_delivery(row))
        return claimed

    def started(self, delivery_id: str, flow_run_id: str, environment: str) -> None:
        """The delivery's run exists: a final state."""
        self._finish(delivery_id, STARTED, flow_run_id=flow_run_id, environment=environment)

    def ignored(self, delivery_id: str, reason: str) -> None:
        """The delivery asks for nothing (relay.yaml at its commit says so): a final state."""
        self._finish(delivery_id, IGNORED, reason=reason)

    def failed(self, delivery_id: str, reason: str) -> None:
        """Given up on; a redelivery by the forge queues it again."""
        self._finish(delivery_id, FAILED, reason=reason)

    def _finish(self, delivery_id: str, state: DeliveryState, **values: str) -> None:
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(
                _deliveries.update()
                .where(_deliveries.c.id == delivery_id, _deliveries.c.state == QUEUED)
                .values(state=state, claimed_until=None, updated_at=now, **values)
            )

    def retry_later(self, delivery_id: str, reason: str, delay: float) -> None:
        """Put the delivery back in the queue, out of every worker's reach for `delay` seconds
        (the lease doubles as the back-off), counting the attempt and keeping its cause."""
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(
                _deliveries.update()
                .where(_deliveries.c.id == delivery_id, _deliveries.c.state == QUEUED)
                .values(
                    claimed_by=None,
                    claimed_until=now + delay,
                    attempts=_deliveries.c.attempts + 1,
                    reason=reason,
                    updated_at=now,
                )
            )

    def status(self, delivery_id: str) -> Delivery | None:
        """The delivery, or None when it was never stored."""
        with self._transaction() as conn:
            row = conn.execute(
                sa.select(_deliveries).where(_deliveries.c.id == delivery_id)
            ).one_or_none()
        return None if row is None else _delivery(row)


_deliveries = webhook_deliveries


def _insert_new(dialect: str, row: dict[str, Any]) -> sa.Executable:
    """INSERT that does nothing when the id exists, on either engine, and returns the id when
    it inserted (psycopg's rowcount is -1 here, so RETURNING says it). No error is raised, so
    PostgreSQL logs none for every duplicate."""
    if dialect == "postgresql":
        return (
            postgresql.insert(_deliveries)
            .values(row)
            .on_conflict_do_nothing()
            .returning(_deliveries.c.id)
        )
    return (
        sqlite.insert(_deliveries).values(row).on_conflict_do_nothing().returning(_deliveries.c.id)
    )


def _delivery(row: sa.Row[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        state=row.state,
        trigger=row.trigger,
        attempts=row.attempts,
        environment=row.environment,
        flow_run_id=row.flow_run_id,
        reason=row.reason,
        received_at=row.received_at,
    )
