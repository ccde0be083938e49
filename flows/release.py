"""A release: one commit of an application, from its changed services to an environment.

1. Scope: the services asked for, or those whose files changed since `base`, or all; plus
   their dependents (transitively), whose integration tests must meet the new providers.
2. First environment (dev): every changed service through its pipeline, concurrently as far
   as the dependency graph allows (a provider is deployed before its consumers); then the
   dependents' integration tests. Unchanged services keep their current digests.
3. Each later environment up to `through`: a promotion of the changed services (same
   digests, one approval where required, the whole set put back if any of it fails).
"""

from __future__ import annotations

import asyncio
import os

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.client import one_client_for_tasks
from flows.dag import run_over_graph
from flows.deploy import Attempt, record_outcome
from flows.promote import promote
from flows.service_pipeline import ServiceRelease, service_pipeline
from relay import git
from relay.errors import StageFailed
from relay.graph import impact, services_touched
from relay.manifest import Manifest
from tasks.notify import NOTIFY_ON_FAILURE
from tasks.record import artifact_key
from tasks.secrets import resolve_configs
from tasks.source import Checkout, checkout_commit, read_manifest
from tasks.test import run_services_integration_tests
from tasks.tracing import relay_attributes, release_id

# How many services of a release are built and deployed at once (RELAY_CONCURRENCY).
CONCURRENCY = int(os.environ.get("RELAY_CONCURRENCY", "4"))


@task(name="ship-service", cache_policy=NO_CACHE)
def ship_service(
    service: str, repository: str, commit: str, environment: str, manifest_file: str
) -> ServiceRelease:
    """One service's pipeline as a task, so the release can run several at once: each in a
    thread of the release's task runner, its subflow on an event loop of that thread.

    A sync task with `asyncio.run`, not an async task awaiting the subflow: measured on this
    Prefect (3.9.1), the async form cost ~2 s more per service."""
    return asyncio.run(service_pipeline(repository, commit, service, environment, manifest_file))


@flow(
    name="release",
    flow_run_name="release-{commit}",
    task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY),
    **NOTIFY_ON_FAILURE,
)
async def release(
    repository: str,
    commit: str = "HEAD",
    services: list[str] | None = None,
    through: str | None = None,
    base: str | None = None,
    manifest_file: str = "relay.yaml",
) -> list[ServiceRelease]:
    """Release `commit` (changed services since `base`, or `services`, or all) to the first
    environment, then promote it up to `through` (default: the first environment only)."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        environments = list(manifest.environments)
        target = _target(manifest, through)
        changed, dependents = _scope(manifest, checkout, services, base, manifest_file)
        relay_attributes(
            app=manifest.app,
            commit=checkout.commit,
            environment=target,
            service=",".join(changed),
            release_id=release_id(),
        )
        get_run_logger().info(
            "release %s: changed %s; dependents to re-test %s",
            checkout.commit[:12],
            ", ".join(changed) or "nothing",
            ", ".join(dependents) or "none",
        )
        first = environments[0]
        for environment in environments[: environments.index(target) + 1]:
            resolve_configs(manifest, environment, changed)  # every environment, before any deploy
        graph = {s: [d for d in manifest.services[s].depends_on if d in changed] for s in changed}
        shipped = run_over_graph(
            graph,
            ship_service,
            repository=repository,
            commit=checkout.commit,
            environment=first,
            manifest_file=manifest_file,
        )
        results = [shipped[s] for s in changed]
        _test_dependents(manifest, checkout, first, dependents, results)
        for environment in environments[1 : environments.index(target) + 1]:
            if changed:
                await promote(repository, checkout.commit, environment, changed, manifest_file)
        await _publish(manifest, checkout, target, results, dependents)
        return results


def _target(manifest: Manifest, through: str | None) -> str:
    if through is None:
        return next(iter(manifest.environments))
    manifest.check_environment(through)
    return through


def _scope(
    manifest: Manifest,
    checkout: Checkout,
    services: list[str] | None,
    base: str | None,
    manifest_file: str,
) -> tuple[list[str], list[str]]:
    deps = manifest.dependency_graph()
    if services:
        manifest.check_services(services)
        return impact(deps, set(services))
    if base is None:
        return impact(deps, set(deps))
    prefix = os.path.dirname(manifest_file)
    paths = {name: os.path.join(prefix, s.path) for name, s in manifest.services.items()}
    touched = services_touched(paths, git.changed_files(checkout.path, base, checkout.commit))
    return impact(deps, touched)


def _test_dependents(
    manifest: Manifest,
    checkout: Checkout,
    environment: str,
    dependents: list[str],
    results: list[ServiceRelease],
) -> None:
    """Consumers of what changed, tested against it; a failure takes back the changed
    services' verification (the ledger records them failed, so they cannot be promoted)."""
    try:
        run_services_integration_tests(manifest, checkout.path, environment, dependents)
    except StageFailed as exc:
        for result in results:
            attempt = Attempt(
                app=manifest.app,
                service=result.service,
                environment=environment,
                image=result.image,
                commit=result.commit,
                tree=result.tree,
                strategy=manifest.environments[environment].strategy,
            )
            record_outcome(attempt, exc, f"a dependent's integration tests failed: {exc}")
        raise


async def _publish(
    manifest: Manifest,
    checkout: Checkout,
    target: str,
    results: list[ServiceRelease],
    dependents: list[str],
) -> None:
    rows: list[dict[str, object]] = [
        {"service": r.service, "role": "changed", "image": r.image, "built": r.built, "url": r.url}
        for r in results
    ]
    rows += [
        {"service": d, "role": "dependent: re-tested", "image": "", "built": False, "url": ""}
        for d in dependents
    ]
    await acreate_table_artifact(
        key=artifact_key(manifest.app, "release"),
        table=rows or [{"service": "-", "role": "nothing changed"}],
        description=f"Release of {manifest.app} {checkout.commit[:12]} through {target}",
    )
