"""Promotion: a release that passed the previous environment, into the next one.

1. The release: named (`release`), else the one `commit` made. Refused as a whole, naming every
   service and deploying nothing, unless each of its digests passed the previous environment;
   the security gates run again (advisories appear after builds).
2. What differs from what the target runs (digest, settings, secret versions) is deployed; the
   rest is recorded as unchanged under the release's id.
3. prod: one approval for the whole promotion, its form showing current -> new per service.
4. Deploys over the dependency graph, a provider before its consumers, independent services
   at once (the release's concurrency), each with its environment's strategy (a canary).
5. staging: then the integration tests of the promoted services and their dependents, and the
   end-to-end tests.
The services of one promotion move together, as a train: if one fails, nothing new starts,
and every service this promotion switched is put back, consumers before providers. Every
attempt lands in the ledger; only recorded successes can be promoted further.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import NoReturn

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_docker import DockerHost

from flows.approval import Decision, approval
from flows.client import one_client_for_tasks
from flows.dag import settle_over_graph
from flows.deploy import (
    Attempt,
    deploy_lock,
    differing,
    put_back,
    record_outcome,
    record_unchanged,
    release_attempt,
    roll_out,
)
from flows.service_pipeline import ServiceRelease
from relay.discovery import service_urls, url_variable
from relay.errors import NotApproved, RolledBack
from relay.graph import impact, restricted, topological_order
from relay.ledger import Ledger
from relay.manifest import Manifest
from relay.platforms.docker import DeployResult
from relay.promotion import approval_description, previous_environment
from relay.releases import Release, Via
from relay.settings import relay_database
from relay.stages.site import StageSite
from tasks.deploy import check_cluster
from tasks.promotion import verify_promotable
from tasks.release import RUN_SUMMARY, find_release, record_arrival
from tasks.scan import check_image_scans
from tasks.secrets import resolve_configs
from tasks.security import check_security
from tasks.service_logs import prepare_log_groups
from tasks.source import Checkout, checkout_commit, read_manifest
from tasks.support.labels import label_run
from tasks.support.logs import SHIP_LOGS
from tasks.support.notify import NOTIFY_ON_FAILURE, with_hooks
from tasks.support.tracing import relay_attributes
from tasks.test import e2e_tests, run_services_integration_tests, stage_site

# How many services of a promotion are deployed at once (RELAY_CONCURRENCY), as in a release.
CONCURRENCY = int(os.environ.get("RELAY_CONCURRENCY", "4"))


@task(name="roll-out-service", cache_policy=NO_CACHE)
def roll_out_service(
    service: str,
    attempts: dict[str, Attempt],
    manifest: Manifest,
    sites: dict[str, StageSite | None],
) -> tuple[Attempt, DeployResult]:
    """One service of the train with its environment's strategy, in a thread of the
    promotion's task runner; its own failure is recorded here, the train's fate by the flow.

    Returns the attempt as it went (its start, secret versions and settings): the task works
    on Prefect's copy of its parameters, not on the flow's."""
    attempt = replace(attempts[service], started_at=datetime.now(UTC))
    try:
        result = asyncio.run(roll_out(DockerHost(), manifest, attempt, sites.get(service)))
        return replace(attempt, switched_at=datetime.now(UTC)), result
    except BaseException as exc:
        record_outcome(attempt, exc, str(exc))
        raise


@flow(
    name="promote",
    flow_run_name="promote-{environment}",
    task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY),
    **with_hooks(SHIP_LOGS, NOTIFY_ON_FAILURE, RUN_SUMMARY),
)
async def promote(
    repository: str,
    commit: str = "HEAD",
    environment: str = "staging",
    services: list[str] | None = None,
    manifest_file: str = "relay.yaml",
    release: str | None = None,
) -> list[ServiceRelease]:
    """Promote `release` (an id or alias; default: the release `commit` made) into
    `environment` from the environment before it. `services` limits it to some of them."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        made = find_release(manifest.app, checkout.commit, release)
        if made.commit != checkout.commit:  # the release's own commit, with its manifest
            checkout = checkout_commit(repository, made.commit)
            manifest = read_manifest(checkout, manifest_file)
        label_run(app=manifest.app, commit=checkout.commit, release=made.id)
        previous = previous_environment(manifest, environment)
        selected = _selected(manifest, made, services)
        soak = manifest.environments[environment].soak_seconds
        verify_promotable(made, selected, previous, environment, soak)
        images = [(s, str(made.image(s))) for s in selected]
        check_image_scans(manifest.image_scan, manifest.app, images)
        docker_host = DockerHost()
        check_security(docker_host, manifest, environment, images)
        resolve_configs(manifest, environment, selected)
        check_cluster(manifest, environment)
        prepare_log_groups(manifest, environment, selected)
        env = manifest.environments[environment]
        relay_attributes(
            app=manifest.app,
            environment=environment,
            commit=made.commit,
            service=",".join(selected),
            strategy=env.strategy,
            release_id=made.id,
        )
        changed = differing(docker_host, manifest, made, environment, selected)
        attempts = {
            s: release_attempt(manifest, made, environment, s, checkout.committed_at)
            for s in selected
        }

        if env.approval.required and changed:
            decision = await _approve(manifest, environment, previous, made, checkout, attempts)
            for attempt in attempts.values():
                attempt.approver, attempt.comment = decision.approver, decision.comment

        async with AsyncExitStack() as locks:
            for service in changed:  # always in dependency order: no two promotions deadlock
                await locks.enter_async_context(deploy_lock(attempts[service]))
            sites = _smoke_sites(docker_host, manifest, made, environment, changed)
            deployed = await _deploy_train(docker_host, manifest, changed, attempts, sites)
            try:
                if not env.approval.required and changed:
                    _verify(docker_host, manifest, made, environment, changed)
            except Exception as exc:
                await _put_back_train(docker_host, manifest, attempts, deployed, exc)
            for service in changed:
                record_outcome(attempts[service], None)
            record_unchanged([attempts[s] for s in selected if s not in changed])
        if _serves_whole(made, environment):
            record_arrival(made, environment, Via.PROMOTION)
        return [_result(manifest, made, attempts[s], deployed.get(s)) for s in selected]


async def _deploy_train(
    docker_host: DockerHost,
    manifest: Manifest,
    changed: list[str],
    attempts: dict[str, Attempt],
    sites: dict[str, StageSite | None],
) -> dict[str, DeployResult]:
    """Deploy `changed` over the dependency graph, independent services at once; on a failure
    nothing more starts, the running ones end, and the train is put back. `attempts` is
    updated with how each went."""
    run = await asyncio.to_thread(
        settle_over_graph,
        restricted(manifest.dependency_graph(), changed),
        roll_out_service,
        stop_on_failure=True,
        attempts=attempts,
        manifest=manifest,
        sites=sites,
    )
    deployed: dict[str, DeployResult] = {}
    for service, (attempt, result) in run.results.items():
        attempts[service], deployed[service] = attempt, result
    if run.failures:
        first = run.failures[min(run.failures, key=run.order.index)]
        await _put_back_train(docker_host, manifest, attempts, deployed, first)
    return deployed


async def _put_back_train(
    docker_host: DockerHost,
    manifest: Manifest,
    attempts: dict[str, Attempt],
    deployed: dict[str, DeployResult],
    cause: BaseException,
) -> NoReturn:
    """Every service this promotion switched, back to what it ran before, consumers before
    providers (`deployed` is in the order they finished, a consumer after its providers),
    each recorded with the cause; then raise."""
    restored = []
    for service in reversed(list(deployed)):
        attempt = replace(attempts[service], switched_at=None)  # it ends now, put back
        image = await put_back(docker_host, manifest, attempt, deployed[service])
        if image is not None:
            restored.append(f"{service} → {image}")
        outcome = RolledBack(str(cause)) if image is not None else cause
        record_outcome(attempt, outcome, f"the promotion stopped: {cause}")
    if restored:
        raise RolledBack(f"{cause}\nput back: {', '.join(restored)}") from cause
    raise cause


def _selected(manifest: Manifest, made: Release, services: list[str] | None) -> list[str]:
    """The release's services this promotion moves (all, or those named), in dependency order."""
    manifest.check_services(services or [])
    order = topological_order(manifest.dependency_graph())
    return [s for s in order if s in made.services and s in (services or order)]


def _smoke_sites(
    docker_host: DockerHost,
    manifest: Manifest,
    made: Release,
    environment: str,
    services: list[str],
) -> dict[str, StageSite | None]:
    """Where each service's smoke tests run (its stage image), when the environment has any
    (on kubernetes they run as Jobs: no stage image is needed)."""
    settings = manifest.environments[environment]
    if not settings.smoke_tests or settings.platform == "kubernetes":
        return {}
    return {
        s: stage_site(docker_host, manifest, s, made.services[s].key, str(made.image(s)))
        for s in services
    }


def _verify(
    docker_host: DockerHost,
    manifest: Manifest,
    made: Release,
    environment: str,
    services: list[str],
) -> None:
    """The promoted services' and their dependents' integration tests, then the end-to-end
    tests. Production skips them: its checks are the strategy's (smoke tests, analysis)."""
    changed, dependents = impact(manifest.dependency_graph(), set(services))
    run_services_integration_tests(docker_host, manifest, made, environment, changed + dependents)
    e2e_tests(manifest, environment)


async def _approve(
    manifest: Manifest,
    environment: str,
    previous: str,
    made: Release,
    checkout: Checkout,
    attempts: dict[str, Attempt],
) -> Decision:
    """One decision for the whole promotion; the form shows current -> new per service."""
    ledger = Ledger(relay_database())
    selected = list(attempts)
    current = {s: ledger.current(manifest.app, environment, s) for s in selected}
    passed = {
        s: ledger.verified_in(manifest.app, previous, s, made.image(s).digest) for s in selected
    }
    try:
        return await approval(
            manifest.app,
            environment,
            approval_description(
                made, checkout.author, checkout.subject, environment, previous, current, passed
            ),
            manifest.environments[environment].approval,
            [checkout.author, checkout.author_email],
        )
    except NotApproved as exc:
        for attempt in attempts.values():
            record_outcome(attempt, exc, str(exc))
        raise


def _result(
    manifest: Manifest, made: Release, attempt: Attempt, result: DeployResult | None
) -> ServiceRelease:
    """What the promotion left serving: deployed now (`result`), or unchanged."""
    url = service_urls(manifest, attempt.environment)[url_variable(attempt.service)]
    return ServiceRelease(
        service=attempt.service,
        environment=attempt.environment,
        commit=made.commit,
        tree=attempt.tree,
        image=str(attempt.image),
        built=False,
        url=result.url if result is not None else url,
        changed=result is not None and result.changed,
        stage_seconds={},
        release=made.id,
    )


def _serves_whole(made: Release, environment: str) -> bool:
    """Whether every service of the release now serves its digest there, by the ledger."""
    ledger = Ledger(relay_database())
    for service, entry in made.services.items():
        current = ledger.current(made.app, environment, service)
        if current is None or current.image != str(entry.image):
            return False
    return True
