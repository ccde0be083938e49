"""The services' own logs in CloudWatch Logs (`cloudwatch.service_logs`): their groups made,
with the manifest's retention, before anything is deployed; Docker's awslogs driver writes them
(`relay.specs`), `relay logs` reads them."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.aws import aws_client
from relay.aws.logs import ensure_group, service_log_group
from relay.errors import TerminalError
from relay.manifest import Manifest
from tasks.support.retry import on_transient


@task(name="prepare-log-groups", cache_policy=NO_CACHE, **on_transient(3, [1, 3, 10]))
def prepare_log_groups(manifest: Manifest, environment: str, services: list[str]) -> list[str]:
    """Each service's log group in `environment`, made (or kept) with its retention; none when
    the manifest keeps the services' output in the engine, or on kubernetes (its log agent's).

    Raises:
        TerminalError: a group cannot be made, naming the setting and what to grant.
    """
    if not manifest.cloudwatch.service_logs:
        return []
    if manifest.environments[environment].platform != "docker":
        return []
    client = aws_client("logs")
    groups = [service_log_group(manifest.app, environment, service) for service in services]
    for group in groups:
        try:
            ensure_group(client, group, manifest.cloudwatch.service_log_retention_days)
        except TerminalError as exc:
            raise TerminalError(
                f"{manifest.source}: cloudwatch.service_logs: cannot prepare log group {group} "
                f"({exc}); grant the pipeline logs:CreateLogGroup and logs:PutRetentionPolicy "
                "on it (relay iam-policy --pipeline), or set service_logs: false"
            ) from None
    return groups
