"""The rolling strategy as a subflow: the plan from relay.strategies.rolling, run step by step."""

from __future__ import annotations

from prefect import flow
from prefect_docker import DockerHost

from flows.client import one_client_for_tasks
from flows.strategies.execute import execute_plan
from relay.manifest import Environment
from relay.platforms import DeployResult, Spec
from relay.stages.site import StageSite
from relay.strategies import rolling as strategy


@flow(name="rolling", flow_run_name="rolling-{spec.service}-{spec.environment}")
async def rolling(
    docker_host: DockerHost,
    spec: Spec,
    env: Environment,
    has_previous: bool,
    smoke: StageSite | None = None,
) -> DeployResult:
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        return await execute_plan(strategy.plan(env, has_previous), docker_host, spec, env, smoke)
