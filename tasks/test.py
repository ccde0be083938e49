"""Test stages that run against deployed services."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from relay.commands import CommandResult
from tasks.build import run_tests


@task(name="run-integration-tests", cache_policy=NO_CACHE)
def run_integration_tests(
    service: str, directory: Path, command: list[str], urls: dict[str, str], artifact_key: str
) -> CommandResult:
    """Run the service's tests against the environment; `urls` become `<NAME>_URL` variables.

    Not retried: a flaky integration test is a finding to fix, not to hide.
    """
    return run_tests("integration tests", service, directory, command, artifact_key, env=urls)
