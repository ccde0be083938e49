"""The rolling strategy as a subflow: the plan from relay.strategies.rolling, run step by step."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect_docker import DockerHost

from flows.strategies.execute import execute_plan
from relay.manifest import Environment
from relay.platforms import DeployResult, Spec
from relay.strategies import rolling as strategy


@flow(name="rolling", flow_run_name="rolling-{spec.service}-{spec.environment}")
def rolling(
    docker_host: DockerHost,
    spec: Spec,
    env: Environment,
    has_previous: bool,
    smoke_directory: Path | None = None,
) -> DeployResult:
    return execute_plan(strategy.plan(env, has_previous), docker_host, spec, env, smoke_directory)
