"""Promotion: the exact digests that passed the previous environment, into the next one.

staging: deploy each service (its environment's strategy), then the integration tests of the
promoted services and their dependents, and the end-to-end tests.
prod: one approval for the whole promotion, then each service with its strategy (canary).
The services of one promotion move together: if one fails, or the end-to-end tests do, every
service this promotion already switched is put back, newest first. Every attempt lands in the
ledger; only recorded successes can be promoted further.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from prefect import flow
from prefect_docker import DockerHost

from flows.approval import Decision, approval
from flows.client import one_client_for_tasks
from flows.deploy import Attempt, deploy_lock, record_outcome, roll_out, verified
from flows.service_pipeline import ServiceRelease
from relay.errors import NotApproved
from relay.graph import impact, topological_order
from relay.manifest import Manifest
from relay.platforms.docker import DeployResult
from relay.promotion import Candidate, previous_environment
from relay.wiring import service_urls
from tasks.image import log_in_registry
from tasks.logs import SHIP_LOGS
from tasks.notify import NOTIFY_ON_FAILURE, with_hooks
from tasks.promotion import verify_promotable
from tasks.record import artifact_key
from tasks.scan import check_image_scans
from tasks.secrets import resolve_configs
from tasks.security import check_security
from tasks.source import Checkout, checkout_commit, read_manifest
from tasks.test import run_e2e_tests, run_services_integration_tests
from tasks.tracing import relay_attributes, release_id


@flow(
    name="promote",
    flow_run_name="promote-{environment}",
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE),
)
async def promote(
    repository: str,
    commit: str,
    environment: str = "staging",
    services: list[str] | None = None,
    manifest_file: str = "relay.yaml",
) -> list[ServiceRelease]:
    """Promote `commit`'s images into `environment` from the environment before it."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        previous = previous_environment(manifest, environment)
        order = _selected(manifest, services)
        registry = log_in_registry(manifest.registry)
        candidates = verify_promotable(registry, manifest.app, checkout.commit, order, previous)
        check_image_scans(
            manifest.image_scan, manifest.app, [(c.service, c.image) for c in candidates]
        )
        docker_host = DockerHost()
        check_security(
            docker_host, manifest, environment, [(c.service, c.image) for c in candidates]
        )
        resolve_configs(manifest, environment, [c.service for c in candidates])
        env = manifest.environments[environment]
        relay_attributes(
            app=manifest.app,
            environment=environment,
            commit=checkout.commit,
            service=",".join(order),
            strategy=env.strategy,
            release_id=release_id(),
        )
        attempts = [_attempt(manifest, environment, env.strategy, c, checkout) for c in candidates]

        if env.approval.required:
            decision = await _approve(
                manifest, environment, previous, candidates, checkout, attempts
            )
            for attempt in attempts:
                attempt.approver, attempt.comment = decision.approver, decision.comment

        deployed: list[tuple[Attempt, DeployResult]] = []
        async with AsyncExitStack() as locks:
            for attempt in attempts:  # always in dependency order: no two promotions deadlock
                await locks.enter_async_context(deploy_lock(attempt))
            try:
                async with verified(docker_host, manifest, deployed):
                    for attempt in attempts:
                        deployed.append(
                            (attempt, await _roll_out_one(docker_host, manifest, checkout, attempt))
                        )
                    if not env.approval.required:
                        _verify(manifest, checkout, environment, [c.service for c in candidates])
            except BaseException as exc:
                for attempt, _ in deployed:
                    record_outcome(attempt, exc, f"the promotion stopped: {exc}")
                raise
            for attempt, _ in deployed:
                record_outcome(attempt, None)
        return [_release(attempt, result, checkout.commit) for attempt, result in deployed]


def _verify(manifest: Manifest, checkout: Checkout, environment: str, services: list[str]) -> None:
    """The promoted services' and their dependents' integration tests, then the end-to-end
    tests. Production skips them: its checks are the strategy's (smoke tests, analysis)."""
    changed, dependents = impact(manifest.dependency_graph(), set(services))
    run_services_integration_tests(manifest, checkout.path, environment, changed + dependents)
    if manifest.e2e_tests:
        run_e2e_tests(
            manifest.app,
            checkout.path,
            list(manifest.e2e_tests),
            service_urls(manifest, environment),
            artifact_key(manifest.app, environment, "e2e-tests"),
        )


async def _roll_out_one(
    docker_host: DockerHost, manifest: Manifest, checkout: Checkout, attempt: Attempt
) -> DeployResult:
    """One service; its own failure is recorded here, the promotion's fate by the caller."""
    try:
        return await roll_out(docker_host, manifest, checkout.path, attempt)
    except BaseException as exc:
        record_outcome(attempt, exc, str(exc))
        raise


async def _approve(
    manifest: Manifest,
    environment: str,
    previous: str,
    candidates: list[Candidate],
    checkout: Checkout,
    attempts: list[Attempt],
) -> Decision:
    try:
        return await approval(
            manifest.app,
            environment,
            _approval_description(manifest.app, environment, previous, candidates, checkout),
            manifest.environments[environment].approval,
            [checkout.author, checkout.author_email],
        )
    except NotApproved as exc:
        for attempt in attempts:
            record_outcome(attempt, exc, str(exc))
        raise


def _selected(manifest: Manifest, services: list[str] | None) -> list[str]:
    manifest.check_services(services or [])
    order = topological_order(manifest.dependency_graph())
    return [s for s in order if s in (services or order)]


def _attempt(
    manifest: Manifest, environment: str, strategy: str, candidate: Candidate, checkout: Checkout
) -> Attempt:
    return Attempt(
        app=manifest.app,
        service=candidate.service,
        environment=environment,
        image=candidate.image,
        commit=checkout.commit,
        tree=candidate.verified.tree,
        strategy=strategy,
        cloudwatch=manifest.cloudwatch,
        committed_at=checkout.committed_at,
    )


def _release(attempt: Attempt, result: DeployResult, commit: str) -> ServiceRelease:
    return ServiceRelease(
        service=attempt.service,
        environment=attempt.environment,
        commit=commit,
        tree=attempt.tree,
        image=attempt.image,
        built=False,
        url=result.url,
        changed=result.changed,
        stage_seconds={},
    )


def _approval_description(
    app: str, environment: str, previous: str, candidates: list[Candidate], checkout: Checkout
) -> str:
    rows = "\n".join(
        f"| {c.service} | `{c.image.split(':')[-1][:12]}` | {c.verified.commit[:10]} | "
        f"✓ {c.verified.ended_at:%m-%d %H:%M} |"
        for c in candidates
    )
    return f"""## Deploy **{app}** to **{environment}**?

Commit `{checkout.commit}` by {checkout.author}: {checkout.subject}

| service | sha256 | commit | {previous} (UTC) |
|---|---|---|---|
{rows}

Every digest above passed {previous} (deploy, integration and end-to-end tests).
"""
