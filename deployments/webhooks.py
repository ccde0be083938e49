"""The webhook receiver: a push to a branch starts the release of that commit.

    POST /github   X-Hub-Signature-256, X-GitHub-Event, X-GitHub-Delivery
    POST /gitlab   X-Gitlab-Token, X-Gitlab-Event, Idempotency-Key (or X-Gitlab-Event-UUID)
    GET  /healthz

Each delivery goes through these checks in order, and the first that decides answers:

    413  the body is larger than `max_body_bytes` (by Content-Length, or by the bytes read)
    401  the signature (GitHub) or token (GitLab) is missing or wrong; nothing is parsed first
    400  the event header is missing or names an event Relay does not handle, the delivery id
         is missing, the body is not JSON, or the payload lacks what its event always has
    200  {"status": "ignored", "reason": ...}: ping, tag pushes, deletions, pull requests
         other than a merge, repositories not in `repositories`, a delivery seen before
         (remembered on disk across restarts), a commit whose relay.yaml is invalid or has no
         environment with `branch:` set to the pushed branch
    202  {"status": "accepted", "flow_run_id": ..., "environment": ...}: a run of
         `deployment` was created with the parameters of `flows/release.py:release`:
         repository, commit, through (the branch's environment), base (None for a new
         branch), manifest_file
    502  the commit could not be fetched from the repository Relay clones (unreachable, or a
         mirror that does not have the commit yet); 503: the Prefect API could not create the
         run. The delivery is forgotten, so the forge's redelivery tries again.

Two guards stop a delivery from releasing twice. The first is the deliveries database in
`state_dir`. The second is the run's idempotency key, `<forge>:<delivery id>`: when the
database is lost, Prefect hands back the run it created the first time.

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
state_dir: /var/lib/relay/webhooks # default: $RELAY_HOME/webhooks
github_secret_block: github-webhook-secret   # optional; the env variables win
```

A GitHub merge sends both a `push` to the base branch and a `pull_request` (closed, merged)
for the same commit, with different delivery ids: subscribe a webhook to one of them, or the
commit is released twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Mapping
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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from relay import git
from relay.errors import ManifestError, RelayError, TerminalError
from relay.manifest import load_manifest
from relay.settings import relay_home
from relay.webhooks import (
    Deliveries,
    Ignored,
    Trigger,
    environment_for_branch,
    parse_github,
    parse_gitlab,
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
# Creating a run is retried quickly on these (the idempotency key makes it safe), for at most
# CREATE_RUN_SECONDS: under GitHub's 10 s delivery timeout.
RETRIED_STATUSES = frozenset({429, 502, 503})
CREATE_RUN_SECONDS = 6.0


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
        description="Holds the deliveries database and the checkouts that relay.yaml is read from.",
    )

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


class _Receiver:
    """From a parsed delivery to a release run; owns the deliveries database and checkouts."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.deliveries = Deliveries(settings.state_dir / "deliveries.db")
        self._checkout_locks: dict[Path, asyncio.Lock] = {}
        # Forges treat owner/name case-insensitively, and so does the lookup.
        self._targets = {name.lower(): t for name, t in settings.repositories.items()}
        self._client: Any = None
        self._deployment_id: Any = None

    async def release(self, forge: Forge, decision: Trigger | Ignored) -> dict[str, Any]:
        if isinstance(decision, Ignored):
            raise _ignored(decision.reason)
        trigger = decision
        target = self._targets.get(trigger.repository.lower())
        if target is None:
            raise _ignored(
                f"repository {trigger.repository!r} is not served by this relay; "
                "add it under repositories in the webhook configuration"
            )
        key = f"{forge}:{trigger.delivery}"
        if await anyio.to_thread.run_sync(self.deliveries.seen_before, key):
            raise _ignored("duplicate delivery", delivery=trigger.delivery)
        try:
            environment = await self._environment(trigger, target)
            run_id = await self._start_run(trigger, target, environment, key)
        except _Reply as reply:
            if reply.status >= 500:  # a retry may succeed: let the redelivery through
                await anyio.to_thread.run_sync(self.deliveries.forget, key)
            raise
        except BaseException:
            await anyio.to_thread.run_sync(self.deliveries.forget, key)
            raise
        return {
            "status": "accepted",
            "flow_run_id": run_id,
            "environment": environment,
            "commit": trigger.after,
            "branch": trigger.branch,
            "delivery": trigger.delivery,
        }

    async def _environment(self, trigger: Trigger, target: RepositoryTarget) -> str:
        """The environment `trigger.branch` releases into, per relay.yaml at `trigger.after`."""
        dest = self._checkout_dir(target.url)
        lock = self._checkout_locks.setdefault(dest, asyncio.Lock())
        async with lock:
            manifest = await anyio.to_thread.run_sync(self._read_manifest, target, trigger, dest)
        environment = environment_for_branch(manifest, trigger.branch)
        if environment is None:
            raise _ignored(
                f"no environment in {target.manifest_file} at {trigger.after[:12]} listens to "
                f"branch {trigger.branch!r}; set `branch: {trigger.branch}` on one to release it"
            )
        return environment

    def _checkout_dir(self, url: str) -> Path:
        name = Path(url.rstrip("/")).name.removesuffix(".git") or "repo"
        key = hashlib.sha256(url.encode()).hexdigest()[:8]
        return self.settings.state_dir / "checkouts" / f"{name}-{key}"

    @staticmethod
    def _read_manifest(target: RepositoryTarget, trigger: Trigger, dest: Path) -> Any:
        sha = trigger.after
        try:
            git.checkout(target.url, sha, dest)
        except RelayError as exc:
            # Includes a commit the repository does not have: a mirror that Relay clones from
            # may lag behind the forge, so this is worth a redelivery, not a final answer.
            logger.warning("fetching %s from %s failed: %s", sha, git.redact(target.url), exc)
            raise _rejected(
                502,
                f"cannot fetch commit {sha[:12]}: it is not (yet) in the repository Relay "
                "clones from, or that repository is unreachable; redeliver once it is there",
            ) from None
        try:
            return load_manifest(dest / target.manifest_file)
        except ManifestError as exc:
            prefix = f"{dest / target.manifest_file}: "
            problems = [p.removeprefix(prefix) for p in exc.problems]
            count = len(problems)
            raise _ignored(
                f"{target.manifest_file} at {sha[:12]} is invalid "
                f"({count} problem{'' if count == 1 else 's'}): {problems[0]}",
                problems=problems,
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
        """Create the run from the deployment (its id looked up once).

        A Prefect server on SQLite answers 503 to concurrent writes, and the client's own
        retries back off 2, 4, 8... s: far past GitHub's 10 s delivery timeout. The idempotency
        key makes a retry safe, so this retries quickly instead, for a few seconds at most.
        """
        if self._client is None:  # served without the app's lifespan: a client of its own
            async with get_client() as client:
                return await self._create_with(client, parameters, key, tags)
        return await self._create_with(self._client, parameters, key, tags)

    async def _create_with(
        self, client: Any, parameters: dict[str, Any], key: str, tags: list[str]
    ) -> Any:
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
            logger.error("deployment %r does not exist", self.settings.deployment)
            raise _rejected(
                503,
                f"deployment {self.settings.deployment!r} does not exist on the Prefect server; "
                "register it (relay deploy)",
            ) from None
        except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
            logger.error("the Prefect API refused or failed: %s", exc)
            raise _rejected(
                503, "the Prefect API could not create the run; redeliver later"
            ) from None
        return str(run.id)


def create_app(settings: WebhookSettings) -> FastAPI:
    """The receiver as an ASGI app: `POST /github`, `POST /gitlab`, `GET /healthz`.

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
        try:
            yield
        finally:
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
            payload = _json_payload(body, request.headers.get("content-type", ""))
            try:
                decision = parse(event, payload, delivery=delivery)
            except ValueError as exc:  # UnsupportedEvent included: both are the sender's fault
                raise _rejected(400, str(exc)) from None
            status, reply = 202, await receiver.release(forge, decision)
            logger.info(
                "%s delivery %s: %s %s@%s -> run %s through %s",
                forge,
                delivery,
                getattr(decision, "repository", "-"),
                reply["branch"],
                reply["commit"][:12],
                reply["flow_run_id"],
                reply["environment"],
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
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
