"""A release: everything an application runs at one commit, from source to an environment.

1. Build: every service's image, found by its image key or built (compile, SAST, unit tests,
   image, push, security gates), all at once: they do not depend on each other.
2. The release: every digest plus the settings that change what runs (`relay.releases`), its
   id a hash of that content, remembered in the ledger and shown as a table in the Prefect UI.
3. First environment (dev): only the services whose digest or settings differ from what runs
   there, over the dependency graph (a provider before its consumers), each with its
   integration tests; then the integration tests of their consumers that did not change. The
   others are recorded as unchanged, under the release's id.
4. Each later environment up to `through`: a promotion of the release (`flows.promote`).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_docker import DockerHost

from flows.build import BuiltService, build_service
from flows.client import one_client_for_tasks
from flows.dag import run_over_graph
from flows.deploy import differing, record_outcome, record_unchanged, release_attempt
from flows.promote import promote
from flows.service_pipeline import ServiceRelease, deploy_service
from flows.spread import run_on_any_worker, spread
from relay import git
from relay.discovery import service_urls, url_variable
from relay.errors import StageFailed
from relay.graph import impact, restricted, services_touched, topological_order
from relay.manifest import Manifest
from relay.releases import Release, ServiceImage, Via
from relay.specs import release_settings
from tasks.deploy import check_cluster
from tasks.release import RUN_SUMMARY, record_arrival, record_release
from tasks.secrets import resolve_configs
from tasks.service_logs import prepare_log_groups
from tasks.source import Checkout, checkout_commit, read_manifest
from tasks.support.labels import label_run
from tasks.support.notify import NOTIFY_ON_FAILURE, with_hooks
from tasks.support.tracing import relay_attributes
from tasks.test import run_services_integration_tests

# How many services of a release are built and deployed at once (RELAY_CONCURRENCY).
CONCURRENCY = int(os.environ.get("RELAY_CONCURRENCY", "4"))


@task(name="build-service", cache_policy=NO_CACHE)
def build_one(
    service: str, repository: str, commit: str, environment: str, manifest_file: str
) -> BuiltService:
    """One service's build as a task, so that the release builds several at once: each in a
    thread of the release's task runner, its subflow on an event loop of that thread.

    A sync task with `asyncio.run`, not an async task awaiting the subflow: measured on this
    Prefect (3.9.1), the async form cost ~2 s more per service."""
    if spread():
        parameters = {
            "repository": repository,
            "commit": commit,
            "service": service,
            "environment": environment,
            "manifest_file": manifest_file,
        }
        built = run_on_any_worker("build/build-service", f"build-{service}", parameters)
        return BuiltService.model_validate(built)
    return asyncio.run(build_service(repository, commit, service, environment, manifest_file))


@task(name="ship-service", cache_policy=NO_CACHE)
def ship_service(
    service: str,
    repository: str,
    commit: str,
    environment: str,
    built: dict[str, BuiltService],
    release: str,
    manifest_file: str,
) -> ServiceRelease:
    """One service's deployment into the first environment, as `build_one` runs its build."""
    if spread():
        parameters = {
            "repository": repository,
            "commit": commit,
            "service": service,
            "environment": environment,
            "built": built[service].model_dump(mode="json"),
            "release": release,
            "manifest_file": manifest_file,
        }
        shipped = run_on_any_worker(
            "deploy-service/deploy-service", f"{service}-{environment}", parameters
        )
        return ServiceRelease.model_validate(shipped)
    return asyncio.run(
        deploy_service(
            repository, commit, service, environment, built[service], release, manifest_file
        )
    )


@flow(
    name="release",
    flow_run_name="release-{commit}",
    task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY),
    **with_hooks(NOTIFY_ON_FAILURE, RUN_SUMMARY),
)
async def release(
    repository: str,
    commit: str = "HEAD",
    services: list[str] | None = None,
    through: str | None = None,
    base: str | None = None,
    manifest_file: str = "relay.yaml",
) -> list[ServiceRelease]:
    """Release `commit`: make its release (every service's digest and settings), deploy it to
    the first environment, then promote it up to `through` (default: the first only). Returns
    each service's outcome in the last environment it reached.

    `services` limits what this run deploys (the release still holds every service: those are
    built, or reused by their image key). `base` no longer decides anything, since a release
    compares itself with what runs: it is kept for the webhook deliveries and deployments that
    pass it, and the log says which services changed since it.
    """
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        checkout = checkout_commit(repository, commit)
        manifest = read_manifest(checkout, manifest_file)
        environments = list(manifest.environments)
        target = _target(manifest, through)
        first = environments[0]
        selected = _selected(manifest, services)
        relay_attributes(app=manifest.app, commit=checkout.commit, environment=target)
        label_run(app=manifest.app, commit=checkout.commit)
        _log_base(manifest, checkout, base)
        for environment in environments[: environments.index(target) + 1]:
            resolve_configs(manifest, environment, selected)  # every environment, before any build
            check_cluster(manifest, environment)
            prepare_log_groups(manifest, environment, selected)

        built = run_over_graph(
            {name: [] for name in manifest.services},
            build_one,
            repository=repository,
            commit=checkout.commit,
            environment=first,
            manifest_file=manifest_file,
        )
        made = record_release(
            _release_of(manifest, checkout, built),
            repository,
            {name: b.built for name, b in built.items()},
        )
        relay_attributes(release_id=made.id)
        label_run(release=made.id)

        docker_host = DockerHost()
        changed = differing(docker_host, manifest, made, first, selected)
        _, dependents = impact(manifest.dependency_graph(), set(changed))
        get_run_logger().info(
            "release %s into %s: deploying %s; unchanged %s; consumers to re-test %s",
            made.short_id,
            first,
            ", ".join(changed) or "nothing",
            ", ".join(s for s in selected if s not in changed) or "none",
            ", ".join(dependents) or "none",
        )
        shipped = run_over_graph(
            restricted(manifest.dependency_graph(), changed),
            ship_service,
            repository=repository,
            commit=checkout.commit,
            environment=first,
            built=built,
            release=made.id,
            manifest_file=manifest_file,
        )
        _test_dependents(docker_host, manifest, checkout, first, dependents, made, shipped)
        unchanged = [s for s in selected if s not in changed]
        record_unchanged(
            [release_attempt(manifest, made, first, s, checkout.committed_at) for s in unchanged]
        )
        if set(selected) == set(manifest.services):
            record_arrival(made, first, Via.RELEASE)

        results = [
            shipped[s] if s in shipped else _unchanged(manifest, first, made, built[s], s)
            for s in selected
        ]
        for environment in environments[1 : environments.index(target) + 1]:
            results = await promote(
                repository, checkout.commit, environment, services, manifest_file, made.id
            )
        return results  # where the release got to: what a person looks at next


def _target(manifest: Manifest, through: str | None) -> str:
    if through is None:
        return next(iter(manifest.environments))
    manifest.check_environment(through)
    return through


def _selected(manifest: Manifest, services: list[str] | None) -> list[str]:
    """The services this run deploys, in dependency order."""
    manifest.check_services(services or [])
    order = topological_order(manifest.dependency_graph())
    return [s for s in order if s in (services or order)]


def _log_base(manifest: Manifest, checkout: Checkout, base: str | None) -> None:
    if base is None:
        return
    root = manifest.root.relative_to(checkout.path)
    paths = {name: str(root / s.path) for name, s in manifest.services.items()}
    touched = services_touched(paths, git.changed_files(checkout.path, base, checkout.commit))
    get_run_logger().info(
        "changed since %s: %s (the release compares every service with what runs)",
        base[:12],
        ", ".join(sorted(touched)) or "no service's files",
    )


def _release_of(manifest: Manifest, checkout: Checkout, built: dict[str, BuiltService]) -> Release:
    return Release(
        app=manifest.app,
        commit=checkout.commit,
        created_at=datetime.now(UTC),
        services={
            name: ServiceImage(image=b.image, commit=b.commit, tree=b.tree, key=b.key)
            for name, b in built.items()
        },
        settings=release_settings(manifest),
    )


def _unchanged(
    manifest: Manifest, environment: str, made: Release, built: BuiltService, service: str
) -> ServiceRelease:
    return ServiceRelease(
        service=service,
        environment=environment,
        commit=made.commit,
        tree=built.tree,
        image=str(built.image),
        built=built.built,
        url=service_urls(manifest, environment)[url_variable(service)],
        changed=False,
        stage_seconds=built.stage_seconds,
        release=made.id,
    )


def _test_dependents(
    docker_host: DockerHost,
    manifest: Manifest,
    checkout: Checkout,
    environment: str,
    dependents: list[str],
    made: Release,
    shipped: dict[str, ServiceRelease],
) -> None:
    """Consumers of what changed, tested against it; a failure takes back the changed
    services' verification (the ledger records them failed, so they cannot be promoted)."""
    try:
        run_services_integration_tests(docker_host, manifest, made, environment, dependents)
    except StageFailed as exc:
        for result in shipped.values():
            attempt = release_attempt(
                manifest, made, environment, result.service, checkout.committed_at
            )
            record_outcome(attempt, exc, f"a dependent's integration tests failed: {exc}")
        raise
