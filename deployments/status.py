"""`relay status`: what the ledger says serves where, next to what the platform runs: the
Docker engine's containers, and for the kubernetes environments of the application's
`relay.yaml`, the cluster's Deployments."""

from __future__ import annotations

import docker
from prefect_docker import DockerHost

from blocks.kubernetes import cluster_client
from relay.ledger import Ledger, Record
from relay.manifest import Manifest
from relay.platforms.docker import DockerPlatform
from relay.platforms.kubernetes import KubernetesPlatform
from relay.settings import platform_home, relay_database
from relay.specs import cluster_access
from relay.status import drift, format_status
from relay.traffic import make_router

Where = tuple[str, str]  # (environment, service)


def status_report(app: str, manifest: Manifest | None = None) -> tuple[str, list[str]]:
    """The status table, and every disagreement between the ledger and the platforms.
    Without `manifest` (the application's relay.yaml) every environment is read as docker."""
    ledger = Ledger(relay_database())
    pairs = ledger.environments(app)
    current: dict[Where, Record] = {}
    for environment, service in pairs:
        record = ledger.current(app, environment, service)
        if record is not None:
            current[(environment, service)] = record
    kubernetes = [
        name
        for name, settings in (manifest.environments.items() if manifest else [])
        if settings.platform == "kubernetes"
    ]
    platform = _platform_digests(app, [p for p in pairs if p[0] not in kubernetes], kubernetes)
    notes: list[str] = []
    for environment in kubernetes:
        assert manifest is not None
        digests, found = _cluster_digests(manifest, environment)
        platform |= digests
        notes += found
    if not current and not platform and not notes:
        return f"no deployments of {app} recorded", []
    return format_status(current.values()), drift(current, platform) + notes


def _cluster_digests(manifest: Manifest, environment: str) -> tuple[dict[Where, str], list[str]]:
    """What the environment's cluster serves per service (the pods' image, digest part), and
    a note per Deployment edited by hand or per cluster that cannot be read."""
    namespace = manifest.environments[environment].namespace or f"{manifest.app}-{environment}"
    try:
        api = cluster_client(cluster_access(manifest, environment))
    except Exception as exc:  # noqa: BLE001 - a missing kubeconfig, an unknown cluster...
        return {}, [f"{environment}: cannot reach its cluster to compare: {exc}"]
    try:
        serving = KubernetesPlatform(api).serving(namespace, manifest.app)
    except Exception as exc:  # noqa: BLE001 - RelayError, or the client's own (401, no route)
        return {}, [f"{environment}: cannot read its Deployments to compare: {exc}"]
    finally:
        api.close()
    digests = {(environment, service): _digest(s.image) for service, s in serving.items()}
    notes = [
        f"{environment}/{service}: Deployment {namespace}/{s.deployment} was edited by "
        f"hand: its pods run {s.image}, Relay set {s.set_by_relay}; Relay does not overwrite "
        f"another manager's field: undo the edit (kubectl rollout undo deployment/"
        f"{s.deployment} -n {namespace}), or give the field back to Relay (`relay render` "
        "piped to kubectl apply --server-side --force-conflicts --field-manager=relay -f -)"
        for service, s in sorted(serving.items())
        if s.edited_by_hand
    ]
    return digests, notes


def _digest(image: str) -> str:
    """`sha256:…` of an image reference by digest; a reference by tag stays as it is."""
    return image.rpartition("@")[2] if "@" in image else image


def _platform_digests(app: str, pairs: list[Where], skipped: list[str]) -> dict[Where, str]:
    """The digest each service's active container carries in its labels (docker), in every
    environment but the `skipped` (kubernetes) ones."""
    found: dict[Where, str] = {}
    with DockerHost().get_client() as client:
        labelled = _labelled_environments(client, app) - set(skipped)
        environments = sorted({env for env, _ in pairs} | labelled)
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
