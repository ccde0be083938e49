"""What a platform needs to run a service in an environment: its spec (`deploy_spec`: docker
or kubernetes, by the environment's platform) and its run settings (`run_settings`: what in
relay.yaml changes how it runs, part of a release's content).
"""

from __future__ import annotations

from typing import Any

from relay.aws.logs import service_log_group
from relay.aws.secrets import ServiceConfig, secret_ids
from relay.discovery import dependency_urls
from relay.manifest import Manifest
from relay.platforms.docker import DeploySpec
from relay.platforms.kubernetes import ClusterAccess, KubeSpec, Neighbour
from relay.registry import ImageRef
from relay.releases import fingerprint
from relay.settings import aws_logs_target
from relay.traffic.haproxy import Route

__all__ = ["deploy_spec", "kubernetes_spec", "release_settings", "run_settings"]


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
        if manifest.cloudwatch.service_logs:  # only when on: other fingerprints stay as they were
            settings["logs"] = "cloudwatch"
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
        env=_environment(manifest, environment, service),
        config=config,
        settings=fingerprint(run_settings(manifest, environment, service)),
        release=release,
        log_options=_log_options(manifest, environment, service),
    )


def _log_options(manifest: Manifest, environment: str, service: str) -> dict[str, str]:
    """Docker's awslogs driver options, when the manifest sends the services' output to
    CloudWatch Logs (`cloudwatch.service_logs`). Non-blocking: a slow CloudWatch drops lines
    from a bounded buffer rather than stalling the service's writes."""
    if not manifest.cloudwatch.service_logs:
        return {}
    region, endpoint = aws_logs_target()
    options = {
        "awslogs-group": service_log_group(manifest.app, environment, service),
        "awslogs-region": region,
        "mode": "non-blocking",
        "max-buffer-size": "4m",
    }
    return options | ({"awslogs-endpoint": endpoint} if endpoint else {})


def _environment(manifest: Manifest, environment: str, service: str) -> dict[str, str]:
    """What Relay itself puts in a service's environment: its neighbours' addresses, its name
    and its environment's (the configuration secret's values come on top at start)."""
    return {
        **dependency_urls(manifest, environment, service),
        "RELAY_SERVICE": service,
        "RELAY_ENVIRONMENT": environment,
    }


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
        env=_environment(manifest, environment, service),
        config=config,
        release=release,
        settings=fingerprint(run_settings(manifest, environment, service)),
        access=cluster_access(manifest, environment),
        traffic=settings.traffic,
        alb_scheme=settings.alb_scheme,
        test_image=spec.test_image or "",
    )


def cluster_access(manifest: Manifest, environment: str) -> ClusterAccess:
    """How `environment`'s cluster is reached (relay.yaml's `kubernetes:` settings)."""
    settings = manifest.environments[environment].cluster
    return ClusterAccess(
        settings.cluster, settings.kubeconfig, settings.context, settings.eks_cluster
    )
