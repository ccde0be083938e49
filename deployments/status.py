"""`relay status`: what the ledger says serves where, next to what the platform runs."""

from __future__ import annotations

import docker
from prefect_docker import DockerHost

from relay.ledger import Ledger, Record
from relay.platforms.docker import DockerPlatform
from relay.settings import platform_home, relay_database
from relay.status import drift, format_status
from relay.traffic import make_router


def status_report(app: str) -> tuple[str, list[str]]:
    ledger = Ledger(relay_database())
    pairs = ledger.environments(app)
    current: dict[tuple[str, str], Record] = {}
    for environment, service in pairs:
        record = ledger.current(app, environment, service)
        if record is not None:
            current[(environment, service)] = record
    platform = _platform_digests(app, pairs)
    if not current and not platform:
        return f"no deployments of {app} recorded", []
    return format_status(current.values()), drift(current, platform)


def _platform_digests(app: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The digest each service's active container carries in its labels."""
    found: dict[tuple[str, str], str] = {}
    with DockerHost().get_client() as client:
        environments = sorted({env for env, _ in pairs} | _labelled_environments(client, app))
        for environment in environments:
            platform = DockerPlatform(
                client, make_router("haproxy", name=f"{app}-{environment}", home=platform_home())
            )
            services = {s for e, s in pairs if e == environment}
            for service in sorted(services | _labelled_services(client, app, environment)):
                active = platform.active(app, environment, service)
                if active is not None:
                    found[(environment, service)] = active.digest
    return found


def _labelled_environments(client: docker.DockerClient, app: str) -> set[str]:
    containers = client.containers.list(filters={"label": [f"relay.app={app}"]})
    return {c.labels.get("relay.env", "") for c in containers} - {""}


def _labelled_services(client: docker.DockerClient, app: str, environment: str) -> set[str]:
    containers = client.containers.list(
        filters={"label": [f"relay.app={app}", f"relay.env={environment}"]}
    )
    return {c.labels.get("relay.service", "") for c in containers} - {""}
