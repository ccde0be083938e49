"""Build stage: compile a service and run its unit tests on the worker."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from relay.commands import CommandResult, run_command
from relay.errors import StageFailed
from relay.junit import read_report, results_table, summary, with_report


@task(name="compile-service", cache_policy=NO_CACHE)
def compile_service(service: str, directory: Path, command: list[str]) -> CommandResult:
    result = run_command(command, cwd=directory, timeout=600)
    if not result.ok:
        raise StageFailed(f"{service}: build command {' '.join(command)} failed:\n{result.tail()}")
    return result


def run_tests(
    kind: str,
    service: str,
    directory: Path,
    command: list[str],
    artifact_key: str,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run a test command, publish its results as a table artifact, fail on a red run."""
    report = directory / f".relay-{kind.replace(' ', '-')}.xml"
    result = run_command(with_report(command, report), cwd=directory, env=env, timeout=900)
    cases = read_report(report)
    report.unlink(missing_ok=True)
    if artifact_key:
        create_table_artifact(
            key=artifact_key,
            table=results_table(cases, command, result.ok),
            description=f"{kind.capitalize()} of {service}: {summary(cases)}",
        )
    if not result.ok:
        raise StageFailed(f"{service}: {kind} failed ({summary(cases)}):\n{result.tail()}")
    return result


@task(name="run-unit-tests", cache_policy=NO_CACHE)
def run_unit_tests(
    service: str, directory: Path, command: list[str], artifact_key: str
) -> CommandResult:
    """Unit tests never retry: a red test is an answer, not a glitch."""
    return run_tests("unit tests", service, directory, command, artifact_key)
