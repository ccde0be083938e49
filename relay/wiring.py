"""How services find each other in an environment (`<NAME>_URL` variables), and what a
platform needs to run one of them there (its spec and run settings).

A service reads its dependencies' addresses from its environment, e.g. orders reads
`INVENTORY_URL`. On the docker platform each address is the service's public (router) port on
loopback, so a dependency's blue/green switch is invisible to its consumers.
"""

from __future__ import annotations

from typing import Any

from relay.aws.secrets import ServiceConfig, secret_ids
from relay.manifest import Manifest
from relay.platforms.docker import DeploySpec
from relay.platforms.kubernetes import ClusterAccess, KubeSpec, Neighbour
from relay.platforms.kubernetes.objects import service_url
from relay.registry import ImageRef
from relay.releases import fingerprint
from relay.traffic.haproxy import Route


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


def run_settings(manifest: Manifest, environment: str, service: str) -> dict[str, Any]:
    """Everything in `relay.yaml` that changes how `service` runs in `environment`, apart from
    its image and its secrets' versions: a change here redeploys the same digest.

    Not the strategy (it changes how the next version arrives, not what runs), nor anything
    of other environments. Part of a release's content (`relay.releases`).
    """
    env = manifest.environments[environment]
    spec = manifest.services[service]
    settings: dict[str, Any] = {
        "platform": env.platform,
        "port": spec.port,
        "health": spec.health,
        "neighbours": dependency_urls(manifest, environment, service),
        "secrets": secret_ids(manifest, environment, service),
        "secret_keys": list(spec.secret_keys),
    }
    if env.platform == "docker":
        ports = env.ports(spec)
        settings["ports"] = {"public": ports.public, "blue": ports.blue, "green": ports.green}
        return settings
    cluster = env.cluster
    return settings | {
        "namespace": env.namespace or f"{manifest.app}-{environment}",
        "replicas": cluster.replicas,
        "resources": cluster.resources.model_dump(),
        "progress_deadline_seconds": cluster.progress_deadline_seconds,
        "public": spec.public,
        "gateway_namespace": cluster.gateway_namespace,
        "dependents": sorted(
            name for name, other in manifest.services.items() if service in other.depends_on
        ),
    }


def release_settings(manifest: Manifest) -> dict[str, dict[str, dict[str, Any]]]:
    """`run_settings` of every service in every environment: a release's settings."""
    return {
        environment: {
            service: run_settings(manifest, environment, service) for service in manifest.services
        }
        for environment in manifest.environments
    }


def deploy_spec(
    manifest: Manifest,
    environment: str,
    service: str,
    image: ImageRef,
    commit: str,
    tree: str,
    config: ServiceConfig | None = None,
    release: str = "",
) -> DeploySpec | KubeSpec:
    """Everything the environment's platform needs to run `image` as `service` there."""
    if manifest.environments[environment].platform == "kubernetes":
        return kubernetes_spec(manifest, environment, service, image, commit, tree, config, release)
    spec = manifest.services[service]
    ports = manifest.environments[environment].ports(spec)
    return DeploySpec(
        app=manifest.app,
        environment=environment,
        service=service,
        image=image,
        commit=commit,
        tree=tree,
        route=Route(
            service=service,
            public_port=ports.public,
            slots={"blue": ports.blue, "green": ports.green},
            health=spec.health,
        ),
        env={
            **dependency_urls(manifest, environment, service),
            "RELAY_SERVICE": service,
            "RELAY_ENVIRONMENT": environment,
        },
        config=config,
        settings=fingerprint(run_settings(manifest, environment, service)),
        release=release,
    )


def kubernetes_spec(
    manifest: Manifest,
    environment: str,
    service: str,
    image: ImageRef,
    commit: str,
    tree: str,
    config: ServiceConfig | None = None,
    release: str = "",
) -> KubeSpec:
    """Everything the kubernetes platform needs to run `image` as `service` in `environment`:
    the environment's cluster settings, and who talks to whom (its NetworkPolicy)."""
    env = manifest.environments[environment]
    settings = env.cluster
    spec = manifest.services[service]
    return KubeSpec(
        app=manifest.app,
        environment=environment,
        namespace=env.namespace or f"{manifest.app}-{environment}",
        service=service,
        image=image,
        commit=commit,
        tree=tree,
        port=spec.port,
        health=spec.health,
        strategy=env.strategy,
        replicas=settings.replicas,
        resources=settings.resources.model_dump(),
        progress_deadline_seconds=settings.progress_deadline_seconds,
        depends_on=tuple(Neighbour(dep, manifest.services[dep].port) for dep in spec.depends_on),
        dependents=tuple(
            name for name, other in manifest.services.items() if service in other.depends_on
        ),
        public=spec.public,
        gateway_namespace=settings.gateway_namespace,
        env={
            **dependency_urls(manifest, environment, service),
            "RELAY_SERVICE": service,
            "RELAY_ENVIRONMENT": environment,
        },
        config=config,
        release=release,
        settings=fingerprint(run_settings(manifest, environment, service)),
        access=ClusterAccess(settings.cluster, settings.kubeconfig, settings.context),
    )
