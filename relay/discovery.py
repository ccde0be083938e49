"""How services find each other in an environment: `<NAME>_URL` variables.

A service reads its dependencies' addresses from its environment, e.g. orders reads
`INVENTORY_URL`. On the docker platform each address is the service's public (router) port on
loopback, so a dependency's blue/green switch is invisible to its consumers; on kubernetes it
is the Service's cluster DNS name.
"""

from __future__ import annotations

from relay.manifest import Manifest
from relay.platforms.kubernetes.objects import service_url

__all__ = ["dependency_urls", "service_urls", "url_variable"]


def url_variable(service: str) -> str:
    return service.upper().replace("-", "_") + "_URL"


def service_urls(manifest: Manifest, environment: str) -> dict[str, str]:
    """`<NAME>_URL` for every service of the manifest in `environment` (on kubernetes, its
    Service's cluster DNS name: reachable from inside the cluster)."""
    env = manifest.environments[environment]
    if env.platform == "kubernetes":
        namespace = env.namespace or environment
        return {
            url_variable(name): service_url(name, namespace, service.port)
            for name, service in manifest.services.items()
        }
    return {
        url_variable(name): f"http://127.0.0.1:{env.ports(service).public}"
        for name, service in manifest.services.items()
    }


def dependency_urls(manifest: Manifest, environment: str, service: str) -> dict[str, str]:
    """The variables one service's container gets: its dependencies' addresses only."""
    every = service_urls(manifest, environment)
    return {
        url_variable(dep): every[url_variable(dep)] for dep in manifest.services[service].depends_on
    }
