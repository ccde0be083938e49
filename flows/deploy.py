"""Deploying images of services to an environment: one at a time per service, with the
environment's strategy, verified, put back when verification fails, and recorded.

Shared by the service pipeline (dev), promotion (staging, prod) and rollback. They decide
*what* to deploy; this module is *how*:
- `deploy_lock`: a Prefect global concurrency limit per app, environment and service, so a
  second deployment of the same service waits instead of interleaving with the first.
- `roll_out`: skip when the image already serves, else run the strategy subflow.
- `put_back`: after a failed verification (tests after the switch), the previous version.
- `record_outcome` / `recorded`: every attempt lands in the ledger, whatever happened, and
  its delivery metrics in CloudWatch (`tasks.metrics`; a failure to publish is only a warning),
  and a rollback is notified (`tasks.support.notify`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prefect import runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect_docker import DockerHost

from flows.strategies import strategy_flow
from relay.errors import NotApproved, RolledBack, TransientError
from relay.ledger import Ledger, Outcome, Record, outcome_of
from relay.manifest import CloudWatch, Manifest
from relay.platforms import Spec
from relay.platforms.docker import DeployResult
from relay.registry import ImageRef
from relay.releases import Release
from relay.settings import relay_database
from relay.specs import deploy_spec
from relay.stages.site import StageSite
from tasks.deploy import current_version, serving_already, switch_back
from tasks.events import publish_deployment_event
from tasks.metrics import publish_delivery_metrics
from tasks.record import record_deployment
from tasks.secrets import resolve_config
from tasks.support.notify import notify_rollback
from tasks.support.tracing import relay_attributes

LOCK_WAIT_SECONDS = 3600
SWITCHED_BACK = "switched back to the kept previous version (no container started)"
# How long the deploy lock outlives a process that dies holding it (a killed worker runs no
# `finally`): Prefect's default lease is 300 s, so a re-run after a crash waited five minutes.
# 60 s is the server's minimum; the holder renews it every 45 s, and the server frees an
# expired one within 15 s.
LOCK_LEASE_SECONDS = 60


@dataclass
class Attempt:
    """One deployment attempt as the ledger will record it; fields fill in as it goes."""

    app: str
    service: str
    environment: str
    image: ImageRef
    commit: str
    tree: str
    strategy: str
    approver: str | None = None
    comment: str | None = None
    release: str | None = None  # the release it belongs to (relay.releases), when in one
    config: str | None = None  # the configuration secrets' versions it ran with
    settings: str | None = None  # its run settings' fingerprint
    unchanged: bool = False  # it served, and the ledger knew it: nothing worth a record
    cloudwatch: CloudWatch | None = None  # where its delivery metrics go; None: nowhere
    committed_at: datetime | None = None  # when its commit was made: the lead time's start
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # When its rollout finished, when that is not when its outcome is known: a promotion's
    # services are switched one by one and judged together (tests of the whole train).
    switched_at: datetime | None = None

    def record(self, outcome: Outcome, reason: str = "") -> Record:
        return Record(
            app=self.app,
            service=self.service,
            environment=self.environment,
            image=str(self.image),
            commit=self.commit,
            tree=self.tree,
            strategy=self.strategy,
            outcome=outcome,
            reason=reason,
            approver=self.approver,
            comment=self.comment,
            release=self.release,
            config=self.config,
            settings=self.settings,
            flow_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
            started_at=self.started_at,
            ended_at=self.switched_at or datetime.now(UTC),
            committed_at=self.committed_at,
        )


def release_attempt(
    manifest: Manifest,
    made: Release,
    environment: str,
    service: str,
    committed_at: datetime | None = None,
    strategy: str | None = None,
    comment: str | None = None,
) -> Attempt:
    """An attempt to put `service` of release `made` into `environment`, under the release's
    id and with its settings there (the environment's strategy unless another is given)."""
    entry = made.services[service]
    return Attempt(
        app=manifest.app,
        service=service,
        environment=environment,
        image=entry.image,
        commit=made.commit,
        tree=entry.tree,
        strategy=strategy or manifest.environments[environment].strategy,
        release=made.id,
        settings=made.fingerprint(environment, service),
        comment=comment,
        cloudwatch=manifest.cloudwatch,
        committed_at=committed_at,
    )


def lock_name(app: str, environment: str, service: str) -> str:
    return f"deploy-{app}-{environment}-{service}"


LOCK_CREATE_ATTEMPTS = 3


async def _ensure_deploy_lock(name: str) -> None:
    """Create the limit (1 slot) the first time; `strict` use below fails on a missing one.

    A plain API call, not a task: a task run's state, written just before the acquisition,
    made the SQLite-backed server answer the acquisition 503, which the client retried ~2 s
    later (a blue/green switch back took 2.1 s instead of 0.3 s, `bench/switch_back.py`)."""
    async with get_client() as client:
        for attempt in range(LOCK_CREATE_ATTEMPTS):
            try:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            except ObjectAlreadyExists:
                return
            except httpx.TransportError as exc:
                if attempt + 1 == LOCK_CREATE_ATTEMPTS:
                    raise TransientError(f"the Prefect API did not answer ({exc})") from exc
                await asyncio.sleep(1)
            else:
                return


@asynccontextmanager
async def deploy_lock(attempt: Attempt) -> AsyncIterator[None]:
    name = lock_name(attempt.app, attempt.environment, attempt.service)
    await _ensure_deploy_lock(name)
    async with concurrency(
        name,
        occupy=1,
        strict=True,
        timeout_seconds=LOCK_WAIT_SECONDS,
        lease_duration=LOCK_LEASE_SECONDS,
    ):
        yield


def spec_of(manifest: Manifest, attempt: Attempt) -> Spec:
    """What the platform runs for `attempt`, its configuration's versions pinned now; the
    attempt learns them (and its settings' fingerprint) for its ledger record."""
    config = resolve_config(manifest, attempt.environment, attempt.service)
    attempt.config = config.label or None
    spec = deploy_spec(
        manifest,
        attempt.environment,
        attempt.service,
        attempt.image,
        attempt.commit,
        attempt.tree,
        config,
        attempt.release or "",
    )
    attempt.settings = spec.settings
    return spec


async def roll_out(
    docker_host: DockerHost, manifest: Manifest, attempt: Attempt, smoke: StageSite | None = None
) -> DeployResult:
    """Run the environment's strategy for `attempt.image`, unless it serves already (with
    the same configuration versions: a rotated secret is deployed again). Smoke tests, where
    the environment has them, run at `smoke` (the service's stage image)."""
    spec = spec_of(manifest, attempt)
    serving = serving_already(docker_host, spec)
    if serving is not None:
        known = Ledger(relay_database()).current(attempt.app, attempt.environment, attempt.service)
        # Served but never recorded (a re-run after failed tests, a crash before the record):
        # this attempt's verification is what the ledger is missing.
        attempt.unchanged = known is not None and known.image == str(attempt.image)
        return DeployResult(
            serving.slot, serving.name, str(spec.image), spec.public_url, False, None
        )
    env = manifest.environments[attempt.environment]
    has_previous = current_version(docker_host, spec) is not None
    return await strategy_flow(env.strategy)(docker_host, spec, env, has_previous, smoke)


def differing(
    docker_host: DockerHost,
    manifest: Manifest,
    release: Release,
    environment: str,
    services: list[str],
) -> list[str]:
    """The services of `release` (of `services`, in their order) whose digest, run settings or
    secret versions differ from what serves in `environment`, or that the ledger does not know
    to serve there: those are deployed; the others are left as they are."""
    ledger = Ledger(relay_database())
    changed = []
    for service in services:
        entry = release.services[service]
        config = resolve_config(manifest, environment, service)
        spec = deploy_spec(
            manifest, environment, service, entry.image, release.commit, entry.tree, config
        )
        known = ledger.current(manifest.app, environment, service)
        serving = serving_already(docker_host, spec)
        if serving is None or known is None or known.image != str(entry.image):
            changed.append(service)
    return changed


def record_unchanged(attempts: list[Attempt]) -> None:
    """The services a release left as they ran: recorded under the release's id."""
    for attempt in attempts:
        attempt.unchanged = True
        record_outcome(attempt, None)


async def put_back(
    docker_host: DockerHost, manifest: Manifest, attempt: Attempt, result: DeployResult
) -> str | None:
    """Put what served before `result` back: traffic back to it when blue/green still keeps it,
    else deployed again (rolling); returns its image, or None when there was nothing before (a
    first deployment stays, for debugging, and is recorded failed)."""
    if not result.changed or result.previous is None:
        return None
    before = Ledger(relay_database()).current(attempt.app, attempt.environment, attempt.service)
    commit, tree, release = ("", "", "")
    if before is not None and before.image == result.previous:
        commit, tree, release = before.commit, before.tree, before.release or ""
    config = resolve_config(manifest, attempt.environment, attempt.service)
    previous = ImageRef.parse(result.previous)
    spec = deploy_spec(
        manifest, attempt.environment, attempt.service, previous, commit, tree, config, release
    )
    if switch_back(docker_host, spec) is None:
        env = manifest.environments[attempt.environment]
        await strategy_flow("rolling")(docker_host, spec, env, True, None)
    return result.previous


async def put_in(docker_host: DockerHost, manifest: Manifest, attempt: Attempt) -> DeployResult:
    """A rollback's fast path for one service, under its lock, recorded: traffic back to the
    previous version when blue/green still keeps it running (its `keep_previous_seconds`),
    else start `attempt.image`, switch when healthy, stop what ran (rolling: no smoke tests,
    no analysis)."""
    attempt.started_at = datetime.now(UTC)
    relay_attributes(
        app=manifest.app,
        service=attempt.service,
        environment=attempt.environment,
        commit=attempt.commit,
        digest=attempt.image.digest,
        strategy="rollback",
        release_id=attempt.release,
    )
    spec = spec_of(manifest, attempt)
    env = manifest.environments[attempt.environment]
    async with deploy_lock(attempt):
        with recorded(attempt):
            switched = switch_back(docker_host, spec)
            if switched is not None:
                attempt.comment = "; ".join(filter(None, [attempt.comment, SWITCHED_BACK]))
                return switched
            has_previous = current_version(docker_host, spec) is not None
            result: DeployResult = await strategy_flow("rolling")(
                docker_host, spec, env, has_previous, None
            )
            return result


def record_outcome(attempt: Attempt, exc: BaseException | None, reason: str = "") -> None:
    """Record the attempt: succeeded, or unchanged when it already served and the ledger knew
    it (only when it belongs to a release: the record names the release), or why not."""
    if exc is None:
        if not attempt.unchanged:
            _publish(attempt, record_deployment(attempt.record(Outcome.SUCCEEDED)))
        elif attempt.release is not None:
            record_deployment(attempt.record(Outcome.UNCHANGED, "the release kept it as it ran"))
        return
    saved = record_deployment(
        attempt.record(outcome_of(exc), reason or f"{type(exc).__name__}: {exc}")
    )
    _publish(attempt, saved)


def _publish(attempt: Attempt, saved: Record) -> None:
    notify_rollback(saved)  # only when it was one; never raises
    if attempt.cloudwatch is not None:
        publish_delivery_metrics(saved, attempt.cloudwatch, attempt.committed_at)
        publish_deployment_event(saved, attempt.cloudwatch)


@contextmanager
def recorded(attempt: Attempt) -> Iterator[Attempt]:
    """Record the attempt in the ledger when the block ends."""
    try:
        yield attempt
    except BaseException as exc:
        record_outcome(attempt, exc, str(exc) if isinstance(exc, RolledBack | NotApproved) else "")
        raise
    record_outcome(attempt, None)


@asynccontextmanager
async def verified(
    docker_host: DockerHost, manifest: Manifest, deployed: list[tuple[Attempt, DeployResult]]
) -> AsyncIterator[None]:
    """Run checks after traffic moved; when they fail, put every previous version back
    (newest deployment first) and report the whole as rolled back."""
    try:
        yield
    except Exception as exc:
        restored = [
            f"{a.service} → {image}"
            for a, r in reversed(deployed)
            if (image := await put_back(docker_host, manifest, a, r)) is not None
        ]
        if not restored:
            raise
        raise RolledBack(f"{exc}\nput back: {', '.join(restored)}") from exc
