"""The blue/green strategy as a subflow: its plan from relay.strategies, run step by step."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect_docker import DockerHost

from flows.strategies.execute import execute_plan
from relay.manifest import Environment
from relay.platforms import DeployResult, Spec
from relay.strategies import blue_green as strategy


@flow(name="blue-green", flow_run_name="blue-green-{spec.service}-{spec.environment}")
def blue_green(
    docker_host: DockerHost,
    spec: Spec,
    env: Environment,
    has_previous: bool,
    smoke_directory: Path | None = None,
) -> DeployResult:
    return execute_plan(strategy.plan(env, has_previous), docker_host, spec, env, smoke_directory)
