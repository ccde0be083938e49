"""The blue/green strategy as a subflow: its plan from relay.strategies, run step by step."""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from flows.strategies.execute import execute_plan
from relay.manifest import Environment
from relay.platforms import DeployResult, Spec
from relay.stages.site import StageSite
from relay.strategies import blue_green as strategy


@flow(name="blue-green", flow_run_name="blue-green-{spec.service}-{spec.environment}")
async def blue_green(
    docker_host: DockerHost,
    spec: Spec,
    env: Environment,
    has_previous: bool,
    smoke: StageSite | None = None,
) -> DeployResult:
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        return await execute_plan(strategy.plan(env, has_previous), docker_host, spec, env, smoke)
