"""Secrets stage: each service's configuration in an environment, checked and pinned to the
secrets' current versions before anything is deployed (values are read only when a container
starts, see tasks/deploy.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from blocks.aws import aws_client
from relay.aws.secrets import ServiceConfig, resolve
from relay.errors import Refusals
from relay.manifest import Manifest
from tasks.support.retry import on_transient


@task(
    name="resolve-config",
    cache_policy=NO_CACHE,
    **on_transient(3, [1, 3, 10]),
)
def resolve_config(manifest: Manifest, environment: str, service: str) -> ServiceConfig:
    config = resolve(aws_client("secretsmanager"), manifest, environment, service)
    get_run_logger().info(
        "%s in %s: %s key(s) from %s",
        service,
        environment,
        len(config.keys),
        config.label or "no configuration secret",
    )
    return config


def resolve_configs(
    manifest: Manifest, environment: str, services: list[str]
) -> dict[str, ServiceConfig]:
    """Every service's configuration, or one error naming every problem: a release stops
    before its first deployment when any service of it would fail."""
    configs: dict[str, ServiceConfig] = {}
    refusals = Refusals(f"configuration for {environment} is incomplete; nothing was deployed")
    for service in services:
        with refusals.check():
            configs[service] = resolve_config(manifest, environment, service)
    refusals.raise_if_any()
    return configs
