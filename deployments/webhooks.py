"""The webhook receiver: a push to a branch starts the release of that commit.

    POST /github   X-Hub-Signature-256, X-GitHub-Event, X-GitHub-Delivery
    POST /gitlab   X-Gitlab-Token, X-Gitlab-Event, Idempotency-Key (or X-Gitlab-Event-UUID)
    GET  /deliveries/{github|gitlab}/{delivery id}
    GET  /healthz

A delivery is answered as soon as it is stored: GitHub gives up after 10 s and does not
redeliver on its own, and a Prefect server on SQLite can be busy for longer than that. Before
the answer only cheap checks run, in this order, and the first that decides answers:

    413  the body is larger than `max_body_bytes` (by Content-Length, or by the bytes read)
    401  the signature (GitHub) or token (GitLab) is missing or wrong; nothing is parsed first
    400  the event header is missing or names an event Relay does not handle, the delivery id
         is missing, the body is not JSON, or the payload lacks what its event always has
    200  {"status": "ignored", "reason": ...}: ping, tag pushes, deletions, pull requests
         other than a merge, repositories not in `repositories`, a delivery stored before
         ("duplicate delivery", by any receiver sharing the database)
    202  {"status": "queued", "delivery": ..., "status_url": "/deliveries/<forge>/<id>"}:
         stored in the delivery queue (`database`); no git and no Prefect call yet
    503  the delivery could not be stored (the database did not answer): redeliver it

Then a dispatcher (an asyncio task in the app's lifespan, one per receiver) claims it under a
lease, checks out the commit, reads relay.yaml there and creates a run of `deployment` with
the parameters of `flows/release.py:release` (repository, commit, through = the branch's
environment, base = None for a new branch, manifest_file). The status URL shows what came of
it: {"delivery", "state", "environment", "flow_run_id", "reason", "attempts"}, where state is

    queued   waiting, being worked on, or waiting to be tried again (`reason`: the last cause)
    started  the run exists: `flow_run_id`, `environment`
    ignored  relay.yaml at the commit is invalid (every problem in `reason`) or no
             environment has `branch:` set to the pushed branch
    failed   `dispatch_attempts` tries failed (the commit could not be fetched: a mirror that
             lags behind the forge; Prefect answered 429/502/503 or was unreachable; the
             deployment does not exist), with a delay doubling from `dispatch_backoff_seconds`
             up to `dispatch_backoff_max_seconds` (about ten minutes in all by default); the
             forge's "Redeliver" queues it again

The status endpoint asks for no secret, like /healthz: a delivery id is a random UUID that
only the forge and the receiver know, and the answer shows no more than the forge's own
delivery log would (the environment, the run's id, why nothing was started); it never shows
server paths or settings. Put it behind the same proxy as the rest.

Several receivers (behind a load balancer, or a standby) share one queue when `database` (or
`RELAY_DATABASE_URL`) names the same PostgreSQL database: a redelivery that reaches another
receiver is a duplicate, each delivery is claimed by one dispatcher at a time (a conditional
UPDATE), and a delivery held by a receiver that died is taken over when its lease
(`lease_seconds`) lapses. The default database is a SQLite file in `state_dir`, for one
receiver.

Two guards stop a delivery from releasing twice. The first is the queue: its id,
`<forge>:<delivery id>`, is stored once. The second is the run's idempotency key, the same id:
when the database is lost, or two dispatchers work on one delivery (a lease that lapsed while
the first was still at it), Prefect hands back the run it created the first time.

Where the relay clones from comes from its own configuration, never from the payload. Secrets
come from environment variables or Prefect Secret blocks, never from a file:

    RELAY_GITHUB_WEBHOOK_SECRET          or RELAY_GITHUB_WEBHOOK_SECRET_BLOCK (a block's name)
    RELAY_GITLAB_WEBHOOK_TOKEN           or RELAY_GITLAB_WEBHOOK_TOKEN_BLOCK

The `--config` file of `relay webhook serve` holds the rest:

```yaml
repositories:                      # full name on the forge -> where Relay clones it from
  Codertocat/Hello-World:
    url: https://github.com/Codertocat/Hello-World.git   # or a local path
    manifest_file: relay.yaml      # default
deployment: release/release        # default: the release deployment of prefect.yaml
max_body_bytes: 1000000            # default
state_dir: /var/lib/relay/webhooks # default: $RELAY_HOME/webhooks (checkouts)
database: postgresql+psycopg://relay@db.internal:5432/relay  # default: $RELAY_DATABASE_URL,
                                   # else state_dir/deliveries.db (SQLite, one receiver)
dispatch_attempts: 16              # default; then dispatch_backoff_seconds: 1.0,
                                   # dispatch_backoff_max_seconds: 60, lease_seconds: 120
github_secret_block: github-webhook-secret   # optional; the env variables win
```

Write a database password in `RELAY_DATABASE_URL` rather than in this file; logs show the URL
without it.

A GitHub merge sends both a `push` to the base branch and a `pull_request` (closed, merged)
for the same commit, with different delivery ids: subscribe a webhook to one of them, or the
commit is released twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs

import anyio.to_thread
import httpx
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from relay import git
from relay.database import shown, url_of
from relay.errors import ManifestError, RelayError, TerminalError, TransientError
from relay.manifest import Manifest, load_manifest
from relay.settings import relay_home
from relay.webhooks import (
    Deliveries,
    Delivery,
    Ignored,
    Trigger,
    environment_for_branch,
    parse_github,
    parse_gitlab,
    trigger_from_json,
    trigger_to_json,
    verify_github,
    verify_gitlab,
)

__all__ = ["RepositoryTarget", "WebhookSettings", "create_app", "serve"]

logger = logging.getLogger("relay.webhooks")

Forge = Literal["github", "gitlab"]

ENV_GITHUB_SECRET = "RELAY_GITHUB_WEBHOOK_SECRET"
ENV_GITLAB_TOKEN = "RELAY_GITLAB_WEBHOOK_TOKEN"
ENV_BLOCK_SUFFIX = "_BLOCK"
# What GitHub marks a form-encoded delivery with (the webhook's other content type).
FORM = "application/x-www-form-urlencoded"
# Forges send UUIDs (36 characters); anything much longer is not a delivery id.
MAX_DELIVERY_ID = 200
# What a delivery id may be: it is a segment of its status URL (/deliveries/<forge>/<id>).
DELIVERY_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._:-]+")
# Creating a run is retried on these (the idempotency key makes it safe): quickly for at most
# CREATE_RUN_SECONDS within one attempt, which a 503 of a busy SQLite server usually outlasts,
# then by putting the delivery back in the queue with a growing delay.
RETRIED_STATUSES = frozenset({429, 502, 503})
CREATE_RUN_SECONDS = 3.0
ENV_DATABASE_URL = "RELAY_DATABASE_URL"
# Manifests read at a commit, kept by (url, commit, file): a commit's relay.yaml never changes,
# and a burst of deliveries usually names a handful of commits.
MANIFEST_CACHE = 128


class RepositoryTarget(BaseModel):
    """Where Relay clones a repository that a forge reports pushes of."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        description="What Relay clones and the release checks out: a git URL or a local path.",
    )
    manifest_file: str = Field(
        default="relay.yaml",
        min_length=1,
        description="The release manifest, relative to the repository's root.",
    )


def _default_state_dir() -> Path:
    return relay_home() / "webhooks"


class WebhookSettings(BaseModel):
    """What the receiver needs: secrets, the repositories it serves, where it keeps state."""

    model_config = ConfigDict(extra="forbid")

    github_secret: SecretStr | None = Field(
        default=None, description="The GitHub webhook's secret, which signs each delivery."
    )
    gitlab_token: SecretStr | None = Field(
        default=None, description="The GitLab webhook's secret token, sent with each delivery."
    )
    repositories: dict[str, RepositoryTarget] = Field(
        default_factory=dict,
        description="Repository full name on the forge (owner/name) -> where Relay clones it.",
    )
    deployment: str = Field(
        default="release/release",
        min_length=1,
        description="The deployment of flows/release.py:release to run, as flow/deployment.",
    )
    max_body_bytes: int = Field(
        default=1_000_000, gt=0, description="Larger deliveries are refused with 413."
    )
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Holds the checkouts that relay.yaml is read from (and the default database).",
    )
    database: str = Field(
        default="",
        repr=False,  # a URL may hold a password; logs show it through relay.database.shown
        description="Where the delivery queue is: a SQLite path or a database URL "
        "(postgresql+psycopg://...), shared by every receiver that serves the same forges. "
        "Default: $RELAY_DATABASE_URL, else deliveries.db in state_dir.",
    )
    dispatch_attempts: int = Field(
        default=16,
        gt=0,
        description="Tries of a delivery (fetching its commit, creating its run) before it fails; "
        "with the default back-off, about ten minutes in all.",
    )
    dispatch_backoff_seconds: float = Field(
        default=1.0, gt=0, description="The delay before the second try; it doubles each time."
    )
    dispatch_backoff_max_seconds: float = Field(
        default=60.0, gt=0, description="The longest delay between two tries."
    )
    dispatch_concurrency: int = Field(
        default=8, gt=0, description="Deliveries one receiver works on at once."
    )
    lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long a claimed delivery is kept from other receivers; a receiver that "
        "dies holding one delays it this long. Longer than one try takes.",
    )
    poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How often the dispatcher looks for deliveries that other receivers "
        "stored, or that a dead receiver's lease let go of.",
    )

    @model_validator(mode="after")
    def _default_database(self) -> WebhookSettings:
        if not self.database.strip():
            env = os.environ.get(ENV_DATABASE_URL, "").strip()
            self.database = env or str(self.state_dir / "deliveries.db")
        return self

    @classmethod
    def load(
        cls, config: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> WebhookSettings:
        """Settings from a `--config` YAML file plus the secrets from the environment.

        A secret comes from its environment variable, else from the Prefect Secret block that
        `<VARIABLE>_BLOCK` or the file's `github_secret_block`/`gitlab_token_block` names.

        Raises:
            TerminalError: The file is unreadable or invalid (every problem is listed), it holds
                a secret, or a named block cannot be read.
        """
        environ = os.environ if environ is None else environ
        data = _read_config(config) if config is not None else {}
        github_block = data.pop("github_secret_block", None)
        gitlab_block = data.pop("gitlab_token_block", None)
        data["github_secret"] = _secret(environ, ENV_GITHUB_SECRET, github_block)
        data["gitlab_token"] = _secret(environ, ENV_GITLAB_TOKEN, gitlab_block)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            where = str(config) if config is not None else "webhook settings"
            problems = [
                f"{where}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            ]
            raise TerminalError("\n".join(problems)) from None


_SECRET_KEYS = {"github_secret", "gitlab_token"}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TerminalError(f"{path}: cannot read the webhook configuration: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TerminalError(f"{path}: the top level must be a mapping with 'repositories:'")
    leaked = sorted(_SECRET_KEYS & set(data))
    if leaked:
        raise TerminalError(
            f"{path}: {', '.join(leaked)}: secrets never come from a file; remove it and set "
            f"{ENV_GITHUB_SECRET} / {ENV_GITLAB_TOKEN}, or name a Prefect Secret block in "
            "github_secret_block / gitlab_token_block"
        )
    return data


def _secret(environ: Mapping[str, str], variable: str, block: object) -> SecretStr | None:
    if environ.get(variable):
        return SecretStr(environ[variable])
    name = environ.get(variable + ENV_BLOCK_SUFFIX) or block
    if not name:
        return None
    if not isinstance(name, str):
        raise TerminalError(f"the Secret block name for {variable} must be text, got {name!r}")
    return SecretStr(_read_secret_block(name))


def _read_secret_block(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        block = cast("Secret[str]", Secret.load(name, _sync=True))  # type: ignore[call-arg]
    except (ValueError, ObjectNotFound) as exc:
        raise TerminalError(
            f"cannot read the Prefect Secret block {name!r} ({exc}); create it with "
            f"`Secret(value=...).save({name!r})` or correct the name"
        ) from None
    value = block.value.get_secret_value()
    if not isinstance(value, str) or not value:
        raise TerminalError(f"the Prefect Secret block {name!r} must hold non-empty text")
    return value


# --- replies ---------------------------------------------------------------------------------


class _Reply(Exception):
    """Ends a request early with `status` and a JSON body; raised by the checks below."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _rejected(status: int, reason: str) -> _Reply:
    return _Reply(status, {"status": "rejected", "reason": reason})


def _ignored(reason: str, **extra: Any) -> _Reply:
    return _Reply(200, {"status": "ignored", "reason": reason, **extra})


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _rejected(400, f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > limit:
            raise _rejected(413, f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _rejected(413, f"the body is over {limit} bytes, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_payload(body: bytes, content_type: str) -> Any:
    """The delivery's JSON, from a JSON body or from GitHub's form encoding (`payload=`)."""
    try:
        if content_type.split(";")[0].strip().lower() == FORM:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
            if "payload" not in fields:
                raise ValueError("the form has no 'payload' field")
            return json.loads(fields["payload"][0])
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _rejected(400, f"the body is not valid JSON: {exc}") from None


def _required_header(request: Request, *names: str) -> str:
    for name in names:
        value = request.headers.get(name)
        if value:
            return value
    raise _rejected(400, f"the {' or '.join(names)} header is missing")


# --- the receiver ----------------------------------------------------------------------------


class _Ignore(Exception):
    """The delivery asks for nothing (relay.yaml at its commit says so): final."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Retry(Exception):
    """This try failed for a reason time may fix (Prefect busy, commit not fetched yet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Fail(Exception):
    """This try failed for a reason no retry fixes (Prefect refused the run's parameters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Receiver:
    """Stores deliveries (the request's side) and turns them into release runs (the
    dispatcher's side); owns the delivery queue, the checkouts and one Prefect client."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.deliveries = Deliveries(settings.database)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._checkout_locks: dict[Path, asyncio.Lock] = {}
        self._manifests: OrderedDict[tuple[str, str, str], Manifest] = OrderedDict()
        # Forges treat owner/name case-insensitively, and so does the lookup.
        self._targets = {name.lower(): t for name, t in settings.repositories.items()}
        self._client: Any = None
        self._deployment_id: Any = None
        self._wake: asyncio.Event | None = None

    # -- the request's side: cheap checks, then store --------------------------------------------

    async def enqueue(self, forge: Forge, decision: Trigger | Ignored) -> dict[str, Any]:
        """Store a delivery that may release something; the forge is answered 202 after this,
        so nothing here waits on git or Prefect."""
        if isinstance(decision, Ignored):
            raise _ignored(decision.reason)
        trigger = decision
        if self._targets.get(trigger.repository.lower()) is None:
            raise _ignored(
                f"repository {trigger.repository!r} is not served by this relay; "
                "add it under repositories in the webhook configuration"
            )
        key = f"{forge}:{trigger.delivery}"
        try:
            stored = await anyio.to_thread.run_sync(
                self.deliveries.enqueue, key, trigger_to_json(trigger)
            )
        except TransientError as exc:
            logger.error("cannot store delivery %s: %s", key, exc)
            raise _rejected(503, "the delivery could not be stored; redeliver later") from None
        if not stored:
            raise _ignored("duplicate delivery", delivery=trigger.delivery)
        if self._wake is not None:
            self._wake.set()
        return {
            "status": "queued",
            "delivery": trigger.delivery,
            "status_url": f"/deliveries/{forge}/{trigger.delivery}",
            "commit": trigger.after,
            "branch": trigger.branch,
        }

    async def status(self, forge: Forge, delivery: str) -> Delivery | None:
        return await anyio.to_thread.run_sync(self.deliveries.status, f"{forge}:{delivery}")

    # -- the dispatcher's side -------------------------------------------------------------------

    async def dispatch_forever(self) -> None:
        """Claim queued deliveries and work on up to `dispatch_concurrency` at once, until
        cancelled. Woken at once by this receiver's enqueues; polls for the rest (deliveries
        other receivers stored, claims whose lease lapsed, retries whose delay is over)."""
        self._wake = asyncio.Event()
        active: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                room = self.settings.dispatch_concurrency - len(active)
                claimed = await self._claim(room) if room > 0 else []
                for delivery in claimed:
                    task = asyncio.create_task(self._dispatch(delivery))
                    active.add(task)
                    task.add_done_callback(self._done(active))
                if claimed and len(claimed) == room:
                    continue  # the queue may hold more than there was room for
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
        finally:
            await self._drain(active)

    def _done(self, active: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            active.discard(task)
            if self._wake is not None:
                self._wake.set()  # room for another

        return done

    @staticmethod
    async def _drain(active: set[asyncio.Task[None]]) -> None:
        """Let deliveries being worked on finish for a few seconds, then cancel them: their
        claims lapse with their lease, and any receiver (this one, restarted) retries them."""
        if active:
            await asyncio.wait(active, timeout=5)
        for task in active:
            task.cancel()

    async def _claim(self, room: int) -> list[Delivery]:
        try:
            return await anyio.to_thread.run_sync(
                self.deliveries.claim, self.worker, self.settings.lease_seconds, room
            )
        except Exception as exc:  # noqa: BLE001 - the database may come back; keep polling
            logger.warning("cannot claim deliveries: %s", exc)
            return []

    async def _dispatch(self, delivery: Delivery) -> None:
        """One try of a claimed delivery, and its outcome recorded."""
        try:
            trigger = trigger_from_json(delivery.trigger)
            environment, run_id = await self._release(delivery.id, trigger)
        except _Ignore as ignore:
            await self._record(self.deliveries.ignored, delivery.id, ignore.reason)
            logger.info("delivery %s: ignored: %s", delivery.id, ignore.reason)
        except _Fail as fail:
            await self._record(self.deliveries.failed, delivery.id, fail.reason)
            logger.error("delivery %s: failed: %s", delivery.id, fail.reason)
        except _Retry as retry:
            await self._retry(delivery, retry.reason)
        except Exception as exc:  # noqa: BLE001 - a bug: counted, so it cannot loop forever
            logger.exception("delivery %s: unexpected error", delivery.id)
            await self._retry(delivery, f"internal error ({type(exc).__name__}); see the logs")
        else:
            await self._record(self.deliveries.started, delivery.id, run_id, environment)
            logger.info(
                "delivery %s: %s %s@%s -> run %s through %s",
                delivery.id,
                trigger.repository,
                trigger.branch,
                trigger.after[:12],
                run_id,
                environment,
            )

    async def _record(self, method: Callable[..., None], *args: str) -> None:
        """An outcome written; when the database is down the claim lapses and the delivery is
        tried again (the run's idempotency key hands back the same run)."""
        try:
            await anyio.to_thread.run_sync(method, *args)
        except Exception as exc:  # noqa: BLE001
            logger.error("cannot record the outcome of delivery %s: %s", args[0], exc)

    async def _retry(self, delivery: Delivery, reason: str) -> None:
        """Back in the queue after a growing delay, or failed once the attempts are spent."""
        attempts = delivery.attempts + 1
        if attempts >= self.settings.dispatch_attempts:
            final = f"{reason} (gave up after {attempts} attempts; redeliver to try again)"
            await self._record(self.deliveries.failed, delivery.id, final)
            logger.error("delivery %s: failed: %s", delivery.id, final)
            return
        delay = min(
            self.settings.dispatch_backoff_seconds * 2**delivery.attempts,
            self.settings.dispatch_backoff_max_seconds,
        )
        delay *= 0.75 + random.random() / 2  # noqa: S311 - jitter, so receivers spread out
        logger.warning("delivery %s: attempt %d: %s; again in %.1f s", delivery.id, attempts,
                       reason, delay)  # fmt: skip
        try:
            await anyio.to_thread.run_sync(self.deliveries.retry_later, delivery.id, reason, delay)
        except Exception as exc:  # noqa: BLE001 - the lease lapses instead
            logger.error("cannot put delivery %s back: %s", delivery.id, exc)

    async def _release(self, key: str, trigger: Trigger) -> tuple[str, str]:
        """(environment, flow run id) of the run created for `trigger`."""
        target = self._targets.get(trigger.repository.lower())
        if target is None:  # the configuration changed since it was stored
            raise _Ignore(f"repository {trigger.repository!r} is no longer served by this relay")
        environment = await self._environment(trigger, target)
        run_id = await self._start_run(trigger, target, environment, key)
        return environment, run_id

    async def _environment(self, trigger: Trigger, target: RepositoryTarget) -> str:
        """The environment `trigger.branch` releases into, per relay.yaml at `trigger.after`."""
        manifest = await self._manifest(target, trigger.after)
        environment = environment_for_branch(manifest, trigger.branch)
        if environment is None:
            raise _Ignore(
                f"no environment in {target.manifest_file} at {trigger.after[:12]} listens to "
                f"branch {trigger.branch!r}; set `branch: {trigger.branch}` on one to release it"
            )
        return environment

    async def _manifest(self, target: RepositoryTarget, sha: str) -> Manifest:
        key = (target.url, sha, target.manifest_file)
        if key in self._manifests:
            self._manifests.move_to_end(key)
            return self._manifests[key]
        dest = self._checkout_dir(target.url)
        lock = self._checkout_locks.setdefault(dest, asyncio.Lock())
        async with lock:
            manifest = await anyio.to_thread.run_sync(self._read_manifest, target, sha, dest)
        self._manifests[key] = manifest
        while len(self._manifests) > MANIFEST_CACHE:
            self._manifests.popitem(last=False)
        return manifest

    def _checkout_dir(self, url: str) -> Path:
        name = Path(url.rstrip("/")).name.removesuffix(".git") or "repo"
        key = hashlib.sha256(url.encode()).hexdigest()[:8]
        return self.settings.state_dir / "checkouts" / f"{name}-{key}"

    @staticmethod
    def _read_manifest(target: RepositoryTarget, sha: str, dest: Path) -> Manifest:
        try:
            git.checkout(target.url, sha, dest)
        except RelayError as exc:
            # Includes a commit the repository does not have: a mirror that Relay clones from
            # may lag behind the forge, so this is tried again later, not final.
            logger.warning("fetching %s from %s failed: %s", sha, git.redact(target.url), exc)
            raise _Retry(
                f"cannot fetch commit {sha[:12]}: it is not (yet) in the repository Relay "
                "clones from, or that repository is unreachable"
            ) from None
        try:
            return load_manifest(dest / target.manifest_file)
        except ManifestError as exc:
            prefix = f"{dest / target.manifest_file}: "
            problems = [p.removeprefix(prefix) for p in exc.problems]
            count = len(problems)
            raise _Ignore(
                f"{target.manifest_file} at {sha[:12]} is invalid "
                f"({count} problem{'' if count == 1 else 's'}): {'; '.join(problems)}"
            ) from None

    async def open(self) -> None:
        """One Prefect client for the receiver's lifetime: a client per delivery cost ~20 ms."""
        self._client = get_client()
        await self._client.__aenter__()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    async def _create_run(self, parameters: dict[str, Any], key: str, tags: list[str]) -> Any:
        """Create the run from the deployment (its id looked up once)."""
        if self._client is None:  # used without the app's lifespan: a client of its own
            async with get_client() as client:
                return await self._create_with(client, parameters, key, tags)
        return await self._create_with(self._client, parameters, key, tags)

    async def _create_with(
        self, client: Any, parameters: dict[str, Any], key: str, tags: list[str]
    ) -> Any:
        """A Prefect server on SQLite answers 503 to concurrent writes, and the client's own
        retries back off 2, 4, 8... s. The idempotency key makes a retry safe, so this retries
        quickly for a few seconds; past that the delivery goes back in the queue (`_Retry`)."""
        deadline = time.monotonic() + CREATE_RUN_SECONDS
        delay = 0.05
        while True:
            try:
                with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
                    if self._deployment_id is None:
                        found = await client.read_deployment_by_name(self.settings.deployment)
                        self._deployment_id = found.id
                    return await client.create_flow_run_from_deployment(
                        self._deployment_id, parameters=parameters, idempotency_key=key, tags=tags
                    )
            except ObjectNotFound:
                self._deployment_id = None
                raise
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code not in RETRIED_STATUSES:
                    raise
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
            delay = min(delay * 2, 1.0)

    async def _start_run(
        self, trigger: Trigger, target: RepositoryTarget, environment: str, key: str
    ) -> str:
        parameters = {
            "repository": target.url,
            "commit": trigger.after,
            "through": environment,
            "base": trigger.before,
            "manifest_file": target.manifest_file,
        }
        try:
            run = await self._create_run(parameters, key, ["webhook", f"branch:{trigger.branch}"])
        except ObjectNotFound:
            raise _Retry(
                f"deployment {self.settings.deployment!r} does not exist on the Prefect server; "
                "register it (relay deploy)"
            ) from None
        except PrefectHTTPStatusError as exc:
            code = exc.response.status_code
            if code in RETRIED_STATUSES or code >= 500:
                raise _Retry(f"the Prefect API answered {code}") from None
            raise _Fail(f"the Prefect API refused the run ({code}): {exc}") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"the Prefect API could not be reached ({type(exc).__name__})") from None
        return str(run.id)


def _status_body(delivery: Delivery) -> dict[str, Any]:
    return {
        "delivery": delivery.id.split(":", 1)[1],
        "state": delivery.state,
        "environment": delivery.environment,
        "flow_run_id": delivery.flow_run_id,
        "reason": delivery.reason,
        "attempts": delivery.attempts,
    }


def create_app(settings: WebhookSettings) -> FastAPI:
    """The receiver as an ASGI app: `POST /github`, `POST /gitlab`,
    `GET /deliveries/{forge}/{delivery id}`, `GET /healthz`. Its lifespan runs the dispatcher:
    served without it, deliveries are stored and wait for a receiver that has one.

    Raises:
        TerminalError, TransientError: the delivery database cannot be opened.

    Example:
        >>> settings = WebhookSettings(github_secret=SecretStr("..."), repositories={
        ...     "acme/shop": RepositoryTarget(url="https://git.example/acme/shop.git")})
        >>> app = create_app(settings)  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8787)  # doctest: +SKIP
    """
    receiver = _Receiver(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await receiver.open()
        dispatcher = asyncio.create_task(receiver.dispatch_forever())
        try:
            yield
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
            await receiver.close()

    app = FastAPI(
        title="Relay webhooks", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )

    async def answer(forge: Forge, request: Request) -> JSONResponse:
        delivery = "-"
        try:
            body = await _read_body(request, settings.max_body_bytes)
            _authenticate(forge, settings, request, body)
            if forge == "github":
                event = _required_header(request, "X-GitHub-Event")
                delivery = _required_header(request, "X-GitHub-Delivery")
                parse = parse_github
            else:
                event = _required_header(request, "X-Gitlab-Event")
                delivery = _required_header(request, "Idempotency-Key", "X-Gitlab-Event-UUID")
                parse = parse_gitlab
            if len(delivery) > MAX_DELIVERY_ID:
                raise _rejected(400, f"the delivery id is over {MAX_DELIVERY_ID} characters")
            if not DELIVERY_ID.fullmatch(delivery):
                # it becomes a path of the status URL: a `/` or `..` would name another one
                raise _rejected(
                    400,
                    "the delivery id may hold only letters, digits, '-', '_', '.' and ':' (the "
                    "forges send UUIDs), and not be '.' or '..'",
                )
            payload = _json_payload(body, request.headers.get("content-type", ""))
            try:
                decision = parse(event, payload, delivery=delivery)
            except ValueError as exc:  # UnsupportedEvent included: both are the sender's fault
                raise _rejected(400, str(exc)) from None
            status, reply = 202, await receiver.enqueue(forge, decision)
            logger.info(
                "%s delivery %s: queued %s %s@%s",
                forge,
                delivery,
                getattr(decision, "repository", "-"),
                reply["branch"],
                reply["commit"][:12],
            )
        except _Reply as early:
            status, reply = early.status, early.body
            logger.info("%s delivery %s: %d %s", forge, delivery, status, reply.get("reason"))
        except Exception:
            # A bug, not bad input (bad input ends in a _Reply above): say so without details.
            logger.exception("%s delivery %s: unexpected error", forge, delivery)
            status, reply = 500, {"status": "error", "reason": "internal error; see the logs"}
        return JSONResponse(reply, status_code=status)

    @app.post("/github")
    async def github(request: Request) -> JSONResponse:
        return await answer("github", request)

    @app.post("/gitlab")
    async def gitlab(request: Request) -> JSONResponse:
        return await answer("gitlab", request)

    @app.get("/deliveries/{forge}/{delivery_id}")
    async def delivery_status(forge: str, delivery_id: str) -> JSONResponse:
        if forge not in ("github", "gitlab"):
            return JSONResponse({"reason": f"unknown forge {forge[:20]!r}"}, status_code=404)
        found = await receiver.status(cast(Forge, forge), delivery_id)
        if found is None:
            return JSONResponse({"reason": "no such delivery"}, status_code=404)
        return JSONResponse(_status_body(found))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _authenticate(forge: Forge, settings: WebhookSettings, request: Request, body: bytes) -> None:
    """401 unless the delivery carries the right signature or token; checks nothing else."""
    if forge == "github":
        secret = settings.github_secret
        header = request.headers.get("X-Hub-Signature-256")
        ok = secret is not None and verify_github(secret.get_secret_value().encode(), body, header)
        name = "X-Hub-Signature-256"
    else:
        secret = settings.gitlab_token
        header = request.headers.get("X-Gitlab-Token")
        ok = secret is not None and verify_gitlab(secret.get_secret_value(), header)
        name = "X-Gitlab-Token"
    if secret is None:
        raise _rejected(401, f"this relay has no {forge} webhook secret configured")
    if not ok:
        raise _rejected(401, f"{name} is {'missing' if header is None else 'wrong'}")


def serve(settings: WebhookSettings, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Run the receiver with uvicorn until interrupted."""
    import uvicorn

    if settings.github_secret is None and settings.gitlab_token is None:
        raise TerminalError(
            f"no webhook secret is configured, so every delivery would be refused; set "
            f"{ENV_GITHUB_SECRET} or {ENV_GITLAB_TOKEN} (or their {ENV_BLOCK_SUFFIX} variants "
            "naming a Prefect Secret block)"
        )
    if not settings.repositories:
        logger.warning("no repositories are configured; every push will be ignored")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logger.info("the delivery queue is in %s", shown(url_of(settings.database)))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
