"""Test stages that run against deployed services."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from relay.commands import CommandResult
from relay.errors import StageFailed
from relay.manifest import Manifest
from relay.platforms.docker import health_ok
from relay.wiring import service_urls
from tasks.build import run_tests
from tasks.record import artifact_key


@task(name="run-integration-tests", cache_policy=NO_CACHE)
def run_integration_tests(
    service: str, directory: Path, command: list[str], urls: dict[str, str], artifact_key: str
) -> CommandResult:
    """Run the service's tests against the environment; `urls` become `<NAME>_URL` variables.

    Not retried: a flaky integration test is a finding to fix, not to hide.
    """
    return run_tests("integration tests", service, directory, command, artifact_key, env=urls)


@task(name="run-smoke-tests", cache_policy=NO_CACHE)
def run_smoke_tests(service: str, directory: Path, command: list[str], url: str) -> CommandResult:
    """Tests against the new version directly (its own slot), before it gets any traffic."""
    return run_tests("smoke tests", service, directory, command, "", env={"SERVICE_URL": url})


@task(name="run-e2e-tests", cache_policy=NO_CACHE)
def run_e2e_tests(
    app: str, directory: Path, command: list[str], urls: dict[str, str], artifact_key: str
) -> CommandResult:
    """The application's end-to-end tests against a whole environment."""
    return run_tests("end-to-end tests", app, directory, command, artifact_key, env=urls)


@task(name="check-health", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def check_health(service: str, url: str) -> None:
    """One request to a service's health endpoint through its router; retried briefly."""
    if not health_ok(url, timeout=5):
        raise StageFailed(f"{service}: {url} did not answer 200")


def run_services_integration_tests(
    manifest: Manifest, environment: str, services: list[str]
) -> None:
    """The integration tests of several services against one environment, in order."""
    urls = service_urls(manifest, environment)
    for name in services:
        spec = manifest.services[name]
        run_integration_tests(
            name,
            spec.directory(manifest.root),
            spec.integration_tests,
            urls,
            artifact_key(manifest.app, name, f"{environment}-integration-tests"),
        )
