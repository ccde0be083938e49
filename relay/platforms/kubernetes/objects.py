"""The Kubernetes objects of one service, as plain dicts: pure functions, no I/O.

What `relay render` prints and what the platform applies are the same dicts, so a reviewer
(or a GitOps repository) sees exactly what Relay would write.

Glossary:
- *track*: which Deployment of a service a pod belongs to: `stable` (rolling and canary's main
  Deployment `<svc>`), `canary` (`<svc>-canary`), or a color, `blue` / `green`
  (`<svc>-blue` / `<svc>-green`). The track is in the Deployment's selector, so the Service
  can pick one track (blue/green switch) or all of them (canary by replica ratio).
- *version*: the digest's first 12 hex digits, a label (label values cannot hold `sha256:`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.aws.secrets import ServiceConfig
from relay.registry import ImageRef
from relay.traffic import alb

Obj = dict[str, Any]

MANAGER = "relay"  # the server-side apply field manager
PREFIX = "relay.dev"
TRACKS = ("stable", "canary", "blue", "green")
COLORS = ("blue", "green")
REDACTED = "********"
# Runs as this user, so `runAsNonRoot` holds for images whose USER is root or unset; above
# 10000 so it is no user of the node's (checkov CKV_K8S_40).
RUN_AS = 10001


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach the cluster (see `relay.manifest.Kubernetes`); no credentials in here."""

    cluster_block: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    eks_cluster: str | None = None


@dataclass(frozen=True)
class Neighbour:
    """A service this one talks to, or that talks to it: its name and port."""

    service: str
    port: int


@dataclass(frozen=True)
class KubeSpec:
    """Everything needed to run one version of one service in one kubernetes environment."""

    app: str
    environment: str
    namespace: str
    service: str
    image: ImageRef
    commit: str
    tree: str
    port: int
    health: str
    strategy: str  # rolling | blue_green | canary: which Deployments and Services exist
    replicas: int = 2
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    progress_deadline_seconds: int = 600
    depends_on: tuple[Neighbour, ...] = ()
    dependents: tuple[str, ...] = ()
    public: bool = False
    gateway_namespace: str = "gateway-system"
    env: Mapping[str, str] = field(default_factory=dict)
    config: ServiceConfig | None = None
    release: str = ""
    settings: str = ""  # the run settings' fingerprint (relay.releases), an annotation
    access: ClusterAccess = field(default_factory=ClusterAccess)
    traffic: str = "auto"  # a canary's router: auto | gateway_api | replica_ratio | alb
    test_image: str = ""  # what its tests run in as Jobs (empty: its own image)
    alb_scheme: str = "internal"  # the ALB of `traffic: alb`: internal | internet-facing

    @property
    def config_label(self) -> str:
        return self.config.label if self.config else ""

    @property
    def url(self) -> str:
        """The service's address inside the cluster."""
        return service_url(self.service, self.namespace, self.port)

    @property
    def public_url(self) -> str:
        """The same address: as `DeploySpec.public_url`, what callers report."""
        return self.url


def service_url(service: str, namespace: str, port: int) -> str:
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


# -- names -------------------------------------------------------------------------------------


def deployment_name(service: str, track: str) -> str:
    """`orders` for the stable track, `orders-canary`, `orders-blue`, `orders-green`."""
    return service if track == "stable" else f"{service}-{track}"


def secret_name(service: str, config_label: str) -> str:
    """`orders-config-<10 hex>`: a new secret version is a new name, so the pod template
    changes and the pods roll; the old Secret stays until the old version is stopped."""
    digest = hashlib.sha256(config_label.encode()).hexdigest()[:10]
    return f"{service}-config-{digest}"


def version_of(image: str) -> str:
    return image.rsplit("@sha256:", 1)[-1][:12] if "@sha256:" in image else "untagged"


# -- labels ------------------------------------------------------------------------------------


def selector(spec: KubeSpec, track: str | None = None) -> dict[str, str]:
    """The labels that pick the service's pods: of one track, or of all (track None)."""
    labels = {f"{PREFIX}/app": spec.app, f"{PREFIX}/service": spec.service}
    return labels | ({f"{PREFIX}/track": track} if track else {})


def _labels(spec: KubeSpec, track: str | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.service,
        "app.kubernetes.io/part-of": spec.app,
        "app.kubernetes.io/managed-by": MANAGER,
        f"{PREFIX}/environment": spec.environment,
        **selector(spec, track),
    }


def _version_annotations(spec: KubeSpec) -> dict[str, str]:
    """On the Deployment only: changing them must not roll the pods (a merge commit of the
    same content promotes the same digest)."""
    return {
        f"{PREFIX}/image": str(spec.image),
        f"{PREFIX}/commit": spec.commit,
        f"{PREFIX}/tree": spec.tree,
        f"{PREFIX}/release": spec.release,
        f"{PREFIX}/settings": spec.settings,
        f"{PREFIX}/config": spec.config_label,
        f"{PREFIX}/config-keys": ",".join(spec.config.keys) if spec.config else "",
    }


def _meta(name: str, spec: KubeSpec, labels: dict[str, str], **extra: Any) -> Obj:
    return {"name": name, "namespace": spec.namespace, "labels": labels, **extra}


# -- the objects -------------------------------------------------------------------------------


# Marks blue/green's previous color, kept without traffic for a switch back until then (ISO
# 8601, UTC); set and removed by annotation patches alone (`Cluster.annotate`), never applied.
KEEP_UNTIL = f"{PREFIX}/keep-until"


def deployment(spec: KubeSpec, track: str, replicas: int) -> Obj:
    """The Deployment of `spec`'s version on `track`, with `replicas` pods.

    A surge of one and no unavailable pods keeps every old pod serving until a new
    one is ready, so a version that never gets ready leaves the old ReplicaSet whole.
    """
    pod_labels = _labels(spec, track) | {f"{PREFIX}/version": version_of(str(spec.image))}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(
            deployment_name(spec.service, track),
            spec,
            _labels(spec, track),
            annotations=_version_annotations(spec),
        ),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "selector": {"matchLabels": selector(spec, track)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": _pod(
                    spec, secret_name(spec.service, spec.config_label) if spec.config else None
                ),
            },
        },
    }


def _pod(spec: KubeSpec, secret: str | None) -> Obj:
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, secret)],
        # A read-only root filesystem still needs somewhere to write temporary files.
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def _container(spec: KubeSpec, secret: str | None) -> Obj:
    probe = {"httpGet": {"path": spec.health, "port": "http"}, "periodSeconds": 5}
    container: Obj = {
        "name": spec.service,
        "image": str(spec.image),
        "imagePullPolicy": "IfNotPresent",  # a digest never changes: pulling again is waste
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in sorted(_variables(spec).items())],
        "readinessProbe": probe | {"failureThreshold": 2},
        "livenessProbe": probe | {"initialDelaySeconds": 10, "failureThreshold": 3},
        "resources": {kind: dict(amounts) for kind, amounts in spec.resources.items()},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (the pod's own)
    }
    if secret is not None:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return container


def _variables(spec: KubeSpec) -> dict[str, str]:
    keys = ",".join(spec.config.keys) if spec.config else ""
    return {
        **spec.env,
        "PORT": str(spec.port),
        "HOST": "0.0.0.0",  # noqa: S104 (the pod's own address; the NetworkPolicy guards it)
        "RELAY_CONFIG_KEYS": keys,
    }


def service(spec: KubeSpec, name: str, track: str | None) -> Obj:
    """A ClusterIP Service on the service's port, selecting one track or all of them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, spec, _labels(spec)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, track),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def secret(spec: KubeSpec, values: Mapping[str, str] | None) -> Obj:
    """The configuration Secret of `spec`'s secret versions; `values` None renders it for
    people, every value replaced by `REDACTED` (and as stringData, so it reads as text)."""
    assert spec.config is not None  # noqa: S101 (callers check `spec.config` first)
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(
            secret_name(spec.service, spec.config_label),
            spec,
            _labels(spec),
            annotations={f"{PREFIX}/config": spec.config_label},
        ),
        "type": "Opaque",
        "immutable": True,  # its name is its version: a rotation makes a new Secret
    }
    if values is None:
        obj["stringData"] = dict.fromkeys(spec.config.keys, REDACTED)
    else:
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return obj


def test_pod_labels(app: str) -> dict[str, str]:
    """What the pods of the application's tests carry (`jobs.py`): the NetworkPolicies admit
    them, since tests on kubernetes run where the services are."""
    return {f"{PREFIX}/app": app, f"{PREFIX}/role": "tests"}


def network_policy(spec: KubeSpec) -> Obj:
    """Deny by default; in: only from the services that depend on this one, the application's
    test pods (and the gateway's namespace when it is public); out: to its dependencies and to
    DNS."""
    port = [{"protocol": "TCP", "port": spec.port}]
    sources: list[Obj] = [{"podSelector": {"matchLabels": test_pod_labels(spec.app)}}]
    if spec.dependents:
        sources.append({"podSelector": {"matchExpressions": [_in("service", spec.dependents)]}})
    if spec.public:
        sources.append(_namespace(spec.gateway_namespace))
    ingress = [{"from": sources, "ports": port}] if sources else []
    egress: list[Obj] = [
        {
            "to": [{"podSelector": {"matchLabels": _service_pods(spec, dep.service)}}],
            "ports": [{"protocol": "TCP", "port": dep.port}],
        }
        for dep in spec.depends_on
    ]
    egress.append(
        {
            "to": [_namespace("kube-system") | {"podSelector": _DNS_PODS}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec.service, spec, _labels(spec)),
        "spec": {
            "podSelector": {"matchLabels": selector(spec)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


_DNS_PODS = {"matchLabels": {"k8s-app": "kube-dns"}}


def _in(key: str, values: tuple[str, ...]) -> Obj:
    return {"key": f"{PREFIX}/{key}", "operator": "In", "values": sorted(values)}


def _service_pods(spec: KubeSpec, service: str) -> dict[str, str]:
    return {f"{PREFIX}/app": spec.app, f"{PREFIX}/service": service}


def _namespace(name: str) -> Obj:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def http_route(spec: KubeSpec, canary_weight: int) -> Obj:
    """The Gateway API HTTPRoute that splits the service's traffic between its stable and
    canary Services by weight. Its parent is the service's own Service (the GAMMA pattern:
    a mesh that implements Gateway API routes calls to `<svc>` by these weights)."""
    ref = {"port": spec.port, "group": "", "kind": "Service"}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(spec.service, spec, _labels(spec)),
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": spec.service}],
            "rules": [
                {
                    "backendRefs": [
                        ref | {"name": f"{spec.service}-stable", "weight": 100 - canary_weight},
                        ref | {"name": f"{spec.service}-canary", "weight": canary_weight},
                    ]
                }
            ],
        },
    }


def alb_ingress(spec: KubeSpec, canary_weight: int) -> Obj:
    """The Ingress that the AWS Load Balancer Controller turns into an ALB listener rule with
    two weighted target groups (the service's stable and canary Services): its rule forwards
    to the action annotation, which holds the weights."""
    action = f"{spec.service}-weighted"
    weighted = alb.weighted_action(
        f"{spec.service}-stable", f"{spec.service}-canary", spec.port, canary_weight
    )
    annotations = {
        "alb.ingress.kubernetes.io/scheme": spec.alb_scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-path": spec.health,
        f"{alb.ACTIONS}{action}": weighted,
    }
    backend = {"service": {"name": action, "port": {"name": "use-annotation"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(spec.service, spec, _labels(spec), annotations=annotations),
        "spec": {
            "ingressClassName": "alb",
            "rules": [
                {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            ],
        },
    }


def render(spec: KubeSpec, values: Mapping[str, str] | None = None) -> list[Obj]:
    """Every object a first deployment of `spec` applies, in apply order: what `relay render`
    prints (with `values` None, the Secret's values redacted) and GitOps users commit.

    Blue/green renders the blue color, selected by both `<svc>` and `<svc>-preview`; canary
    renders its stable Deployment and, for the Gateway API, the stable and canary Services
    and the HTTPRoute with all traffic on stable.
    """
    track = COLORS[0] if spec.strategy == "blue_green" else "stable"
    found: list[Obj] = [secret(spec, values)] if spec.config is not None else []
    found.append(network_policy(spec))
    found.append(deployment(spec, track, spec.replicas))
    found.append(service(spec, spec.service, track))
    if spec.strategy == "blue_green":
        found.append(service(spec, f"{spec.service}-preview", track))
    if spec.strategy == "canary":
        found.append(service(spec, f"{spec.service}-stable", "stable"))
        found.append(service(spec, f"{spec.service}-canary", "canary"))
        found.append(alb_ingress(spec, 0) if spec.traffic == "alb" else http_route(spec, 0))
    return found
