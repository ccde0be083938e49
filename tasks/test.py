"""Test stages that run against deployed services.

On docker, integration and smoke tests run where the service's other stages run (its stage
image, `tasks.stages`), with host networking so that `<NAME>_URL` on loopback reaches the
services. On kubernetes, integration tests run in the cluster as a Job (`relay.platforms.
kubernetes.jobs`), where the cluster DNS names in `<NAME>_URL` resolve. The application's
end-to-end tests belong to no service: they run on the worker, from the directory of
`relay.yaml`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect_docker import DockerHost

from blocks.kubernetes import cluster_client
from relay.discovery import service_urls
from relay.errors import StageFailed
from relay.junit import parse_report, results_table, summary
from relay.manifest import Manifest
from relay.platforms.docker import health_ok
from relay.platforms.kubernetes import ClusterAccess, KubeSpec
from relay.platforms.kubernetes.jobs import ClusterTests, reporting_command, run_job, split_report
from relay.releases import Release
from relay.specs import cluster_access
from relay.stages.plan import stage_commands
from relay.stages.site import StageResult, StageSite
from tasks.record import artifact_key
from tasks.stages import prepare_stage_image, run_tests, site_of


@task(name="run-integration-tests", cache_policy=NO_CACHE)
def run_integration_tests(
    docker_host: DockerHost,
    service: str,
    site: StageSite,
    command: list[str],
    urls: dict[str, str],
    artifact_key: str,
) -> StageResult:
    """Run the service's tests against the environment; `urls` become `<NAME>_URL` variables.

    Not retried: a flaky integration test is a finding to fix, not to hide.
    """
    return run_tests(
        docker_host, "integration tests", service, site, command, artifact_key, urls, "host"
    )


@task(name="run-integration-tests-in-cluster", cache_policy=NO_CACHE)
def run_integration_tests_in_cluster(
    manifest: Manifest,
    environment: str,
    service: str,
    image: str,
    command: list[str],
    artifact_key: str,
) -> StageResult:
    """The service's integration tests as a Job in the environment's namespace, in `image`
    (its `test_image`, else its own image), with the cluster DNS names as `<NAME>_URL`.

    Raises:
        StageFailed: the tests failed, or the Job never ran to an end (its reason, its log).
    """
    return _in_cluster(
        manifest, environment, "integration tests", service, image, command, artifact_key
    )


@task(name="run-e2e-tests-in-cluster", cache_policy=NO_CACHE)
def run_e2e_tests_in_cluster(
    manifest: Manifest, environment: str, artifact_key: str
) -> StageResult:
    """The application's end-to-end tests as a Job in a kubernetes environment's namespace, in
    `e2e_image`."""
    assert manifest.e2e_tests is not None and manifest.e2e_image is not None  # noqa: S101
    command = list(manifest.e2e_tests)
    return _in_cluster(
        manifest, environment, "end-to-end tests", "e2e", manifest.e2e_image, command, artifact_key
    )


def e2e_tests(manifest: Manifest, environment: str) -> StageResult | None:
    """The application's end-to-end tests against `environment`, where they can reach it: a
    Job in the namespace on kubernetes (in `e2e_image`), on the worker for docker. None when
    the application has none.

    Raises:
        StageFailed: they failed, or a kubernetes environment has no `e2e_image` to run them.
    """
    if manifest.e2e_tests is None:
        return None
    key = artifact_key(manifest.app, environment, "e2e-tests")
    if manifest.environments[environment].platform == "kubernetes":
        if manifest.e2e_image is None:
            raise StageFailed(
                f"{manifest.source}: e2e_tests run against {environment}, a kubernetes "
                "environment, as a Job in its namespace (its Services' names resolve only "
                "there): set e2e_image to an image that holds them"
            )
        return run_e2e_tests_in_cluster(manifest, environment, key)
    urls = service_urls(manifest, environment)
    return run_e2e_tests(manifest.app, manifest.root, list(manifest.e2e_tests), urls, key)


def _in_cluster(
    manifest: Manifest,
    environment: str,
    kind: str,
    who: str,
    image: str,
    command: list[str],
    artifact_key: str,
) -> StageResult:
    """Run `command` as a Job in the environment's namespace; a red run raises StageFailed."""
    env = manifest.environments[environment]
    job = ClusterTests(
        app=manifest.app,
        environment=environment,
        namespace=env.namespace or f"{manifest.app}-{environment}",
        service=who,
        stage=kind.replace(" ", "-"),
        image=image,
        command=reporting_command(command),
        env=service_urls(manifest, environment),
    )
    return _run_job(job, cluster_access(manifest, environment), kind, command, artifact_key)


def _run_job(
    job: ClusterTests, access: ClusterAccess, kind: str, command: list[str], artifact_key: str
) -> StageResult:
    started = time.monotonic()
    api = cluster_client(access)
    try:
        outcome = run_job(api, job)
    finally:
        api.close()
    output, report = split_report(outcome.output)
    where = f"a Job in {job.namespace} ({outcome.reason})"
    result = StageResult(
        argv=command,
        exit_code=1 if outcome.exit_code is None else outcome.exit_code,
        output=output,
        seconds=time.monotonic() - started,
        where=where,
        reports={f"{job.stage}.xml": report} if report else {},
    )
    cases = parse_report(report)
    if artifact_key:
        create_table_artifact(
            key=artifact_key,
            table=results_table(cases, command, result.ok),
            description=f"{kind.capitalize()} of {job.service} ({where}): {summary(cases)}",
        )
    if not result.ok:
        code = "no exit code" if outcome.exit_code is None else f"exit code {outcome.exit_code}"
        raise StageFailed(
            f"{job.service}: {kind} failed ({summary(cases)}, {code}) in {where}:\n{result.tail()}"
        )
    return result


@task(name="run-smoke-tests-in-cluster", cache_policy=NO_CACHE)
def run_smoke_tests_in_cluster(spec: KubeSpec, command: list[str], url: str) -> StageResult:
    """Smoke tests against the new version directly (its own Service, `url`), before it gets
    any traffic, as a Job in its namespace: in the service's `test_image`, else its image."""
    job = ClusterTests(
        app=spec.app,
        environment=spec.environment,
        namespace=spec.namespace,
        service=spec.service,
        stage="smoke-tests",
        image=spec.test_image or str(spec.image),
        command=reporting_command(command),
        env={"SERVICE_URL": url},
    )
    return _run_job(job, spec.access, "smoke tests", command, "")


@task(name="run-smoke-tests", cache_policy=NO_CACHE)
def run_smoke_tests(
    docker_host: DockerHost, service: str, site: StageSite, command: list[str], url: str
) -> StageResult:
    """Tests against the new version directly (its own slot), before it gets any traffic."""
    env = {"SERVICE_URL": url}
    return run_tests(docker_host, "smoke tests", service, site, command, "", env, "host")


@task(name="run-e2e-tests", cache_policy=NO_CACHE)
def run_e2e_tests(
    app: str, directory: Path, command: list[str], urls: dict[str, str], artifact_key: str
) -> StageResult:
    """The application's end-to-end tests against a whole environment, on the worker."""
    site = StageSite(directory)
    return run_tests(DockerHost(), "end-to-end tests", app, site, command, artifact_key, urls)


@task(name="check-health", cache_policy=NO_CACHE)
def check_health(service: str, url: str, tries: int = 3) -> None:
    """The service's health endpoint through its router, asked up to `tries` times a second
    apart: a service that does not answer then is down, which is a finding, not a glitch."""
    for attempt in range(tries):
        if health_ok(url, timeout=5):
            return
        if attempt + 1 < tries:
            time.sleep(1)
    raise StageFailed(f"{service}: {url} did not answer 200 ({tries} tries)")


def stage_site(
    docker_host: DockerHost, manifest: Manifest, service: str, key: str, image: str
) -> StageSite:
    """Where `service`'s tests run: its stage image (prepared, or found by content)."""
    prepared = prepare_stage_image(docker_host, manifest, service, key, image)
    return site_of(manifest, service, prepared)


def run_services_integration_tests(
    docker_host: DockerHost,
    manifest: Manifest,
    release: Release,
    environment: str,
    services: list[str],
) -> None:
    """The integration tests of several services of `release` against one environment, in
    order; a service without integration tests is skipped."""
    urls = service_urls(manifest, environment)
    for name in services:
        spec = manifest.services[name]
        command = stage_commands(spec, spec.directory(manifest.root)).integration_tests
        if command is None:
            continue
        entry = release.services[name]
        key = artifact_key(manifest.app, name, f"{environment}-integration-tests")
        if manifest.environments[environment].platform == "kubernetes":
            image = spec.test_image or str(entry.image)
            run_integration_tests_in_cluster(manifest, environment, name, image, command, key)
            continue
        run_integration_tests(
            docker_host,
            name,
            stage_site(docker_host, manifest, name, entry.key, str(entry.image)),
            command,
            urls,
            key,
        )
