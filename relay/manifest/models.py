"""The models of relay.yaml, from `Manifest` down: each part's fields, defaults and helpers.
A part's own rules are in its field types (fields.py); rules that span parts are in checks.py.
Build a `Manifest` with `load_manifest` or `parse_manifest` (load.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from relay.errors import TerminalError
from relay.manifest.fields import (
    AlarmName,
    AppName,
    BaseUrl,
    Command,
    Cpu,
    DimensionValue,
    DockerfilePath,
    EnvironmentName,
    HealthPath,
    Memory,
    Namespace,
    Port,
    PromQL,
    RegistryAddress,
    SarifPath,
    SecretId,
    SecretKey,
    ServiceName,
    ServicePath,
    SetupPath,
    placeholders_in,
)
from relay.manifest.limits import (
    ANALYSIS_INTERVAL_MAX,
    ANALYSIS_INTERVAL_MIN,
    APPROVAL_TIMEOUT_MAX,
    APPROVAL_TIMEOUT_MIN,
    DEFAULT_ADVISORIES,
    DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_CANARY_STEPS,
    DEFAULT_DOCKERFILE,
    DEFAULT_HEALTH,
    DEFAULT_PORT_OFFSETS,
    DEFAULT_REGISTRY,
    DEFAULT_TOKENS_SECRET,
    KEEP_PREVIOUS_MAX,
    PORT_OFFSET_MAX,
    PRODUCTION,
    PROGRESS_DEADLINE_MAX,
    PROGRESS_DEADLINE_MIN,
    REPLICAS_MAX,
    REPLICAS_MIN,
    SOAK_MAX,
)
from relay.manifest.ports import ServicePorts, docker_ports


class _Model(BaseModel):
    # strict: YAML already types its values, so "8002" in quotes is a mistake, not a port.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Sast(_Model):
    """Static analysis of a service's source. `sarif`, relative to the service's path, is the
    report a non-bandit command writes (see relay/sast.py). Without `command`, the service's
    language decides (relay.stages.plan): bandit for Python, none for the others."""

    command: Command | None = None
    fail_on: Literal["low", "medium", "high", "never"] = "high"
    sarif: SarifPath | None = None


class Service(_Model):
    """One deployable service: its source, how to build and test it, and what it needs."""

    path: ServicePath
    dockerfile: DockerfilePath = DEFAULT_DOCKERFILE
    build_args: dict[str, str] = Field(default_factory=dict)
    port: Port
    health: HealthPath = DEFAULT_HEALTH
    depends_on: list[str] = Field(default_factory=list)
    # Kubernetes: its NetworkPolicy also admits the gateway's namespace (see `Kubernetes`).
    public: bool = False
    # Where the stages run (relay.stages): a container by default, built from `test_target`,
    # or `stage_image` with `setup`, or the service's own image.
    runner: Literal["container", "host"] = "container"
    test_target: Annotated[str, Field(min_length=1)] | None = None
    stage_image: Annotated[str, Field(min_length=1)] | None = None
    setup: Command | None = None
    setup_files: list[SetupPath] = Field(default_factory=list)
    # None when left out: the language's default (relay.stages.plan); written as null: none.
    build: Command | None = None
    unit_tests: Command | None = None
    integration_tests: Command | None = None
    # Kubernetes: the image its integration tests run in, as a Job in the environment's
    # namespace (default: the service's own image, which must then hold its tests).
    test_image: Annotated[str, Field(min_length=1)] | None = None
    sast: Sast | None = Field(default_factory=Sast)
    secret_keys: list[SecretKey] = Field(default_factory=list)
    secrets: dict[str, SecretId] = Field(default_factory=dict)

    def directory(self, root: Path) -> Path:
        """The service's source directory, given the manifest's directory."""
        return root / self.path

    def dockerfile_path(self, root: Path) -> Path:
        """The service's Dockerfile, given the manifest's directory."""
        return self.directory(root) / self.dockerfile


class CloudWatchMetrics(_Model):
    """Where each version's requests are counted in CloudWatch (an ALB target group per
    version, say), read with GetMetricData over each canary window: `dimensions`' values may
    hold `{{service}}`, `{{environment}}` and `{{version}}` (`canary` or `stable`)."""

    namespace: Annotated[str, Field(min_length=1)]
    dimensions: dict[str, DimensionValue] = Field(default_factory=dict)
    requests: Annotated[str, Field(min_length=1)]  # a count metric, summed (RequestCount)
    errors: Annotated[str, Field(min_length=1)]  # a count metric, summed (..._5XX_Count)
    response_time: Annotated[str, Field(min_length=1)] | None = None  # averaged
    response_time_unit: Literal["seconds", "milliseconds"] = "seconds"


# HAProxy's Prometheus exporter, as the local stack's Prometheus labels each router it scrapes
# (app, environment): a server is a slot; `{{version}}` is the canary's or the stable one's.
_HAPROXY_SERVER = (
    'app="{{app}}",environment="{{environment}}",proxy="be_{{service}}",server="{{version}}"'
)
# What HAProxy's counters count (relay.analysis.ServerCounters.from_haproxy): every response,
# plus the attempts the server failed without one; errors are the 5xx and those attempts.
_HAPROXY_FAILED = " + ".join(
    "sum(increase(haproxy_server_" + counter + "_total{" + _HAPROXY_SERVER + "}[{{window}}]))"
    for counter in ("response_errors", "connection_errors", "retry_warnings")
)
HAPROXY_REQUESTS = (
    "sum(increase(haproxy_server_http_responses_total{"
    + _HAPROXY_SERVER
    + "}[{{window}}])) + "
    + _HAPROXY_FAILED
)
HAPROXY_ERRORS = (
    "sum(increase(haproxy_server_http_responses_total{"
    + _HAPROXY_SERVER
    + ',code="5xx"}[{{window}}])) + '
    + _HAPROXY_FAILED
)
HAPROXY_RESPONSE_MS = (
    "max(haproxy_server_response_time_average_seconds{" + _HAPROXY_SERVER + "}) * 1000"
)


class PrometheusCheck(_Model):
    """One more PromQL query judged at every canary step, with limits on its single value: a
    value above `max` or below `min` fails the step; no value is inconclusive. It may use
    `{{canary}}` and `{{stable}}` to compare both versions in one query."""

    name: Annotated[str, Field(min_length=1, max_length=80)]
    query: PromQL
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _limited(self) -> PrometheusCheck:
        if self.max is None and self.min is None:
            raise PydanticCustomError(
                "relay", "a check needs a limit: write max: (fails above) or min: (fails below)"
            )
        if "version" in placeholders_in(self.query):
            raise PydanticCustomError(
                "relay",
                "{{version}} is only for requests, errors and response_ms (read once per "
                "version); a check names the versions itself: {{canary}}, {{stable}}",
            )
        return self


class PrometheusMetrics(_Model):
    """Where each version's requests are counted in Prometheus, read with instant PromQL
    queries at the end of each canary window. `requests`, `errors` (counts in the window) and
    `response_ms` (mean milliseconds) are asked once per version, `{{version}}` being the
    canary's or the stable one's name (a slot, blue or green, on docker; a track on
    kubernetes); `{{window}}` is the window's length (such as `10s`). The defaults read HAProxy's
    exporter as the local stack scrapes it. `address` defaults to $RELAY_PROMETHEUS_URL."""

    address: BaseUrl | None = None
    requests: PromQL = HAPROXY_REQUESTS
    errors: PromQL = HAPROXY_ERRORS
    response_ms: PromQL | None = HAPROXY_RESPONSE_MS
    checks: list[PrometheusCheck] = Field(default_factory=list)


class Analysis(_Model):
    """How a canary is judged at each step, from its requests beside the stable version's in
    the same window.

    A step with fewer than `min_requests` says nothing either way: `on_inconclusive` decides
    whether that fails the deployment, pauses it for a person, or counts as passed. The limits
    are absolute (`max_error_rate`, `max_response_ms`) and, when set, relative to the stable
    version (`max_error_rate_increase`: the canary's error rate minus the stable's;
    `max_response_ratio`: the canary's mean response time over the stable's). Errors or
    slowness that the stable version shows as much as the canary are not blamed on the canary:
    the step is inconclusive.
    """

    interval_seconds: Annotated[
        float, Field(ge=ANALYSIS_INTERVAL_MIN, le=ANALYSIS_INTERVAL_MAX)
    ] = 10
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_response_ms: Annotated[int, Field(ge=1)] = 1000
    min_requests: Annotated[int, Field(ge=1)] = 20
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] | None = None
    max_response_ratio: Annotated[float, Field(ge=1)] | None = None
    on_inconclusive: Literal["fail", "pause", "continue"] = "fail"
    cloudwatch_alarms: list[AlarmName] = Field(default_factory=list)
    # Where the versions' requests are counted: HAProxy's counters (docker), CloudWatch
    # metrics (any platform; `cloudwatch_metrics` says which), or Prometheus (any platform;
    # `prometheus` says where and how, HAProxy's exporter by default).
    metrics: Literal["haproxy", "cloudwatch", "prometheus"] = "haproxy"
    cloudwatch_metrics: CloudWatchMetrics | None = None
    prometheus: PrometheusMetrics | None = None

    @model_validator(mode="after")
    def _metrics_named(self) -> Analysis:
        if self.metrics == "cloudwatch" and self.cloudwatch_metrics is None:
            raise PydanticCustomError(
                "relay",
                "metrics: cloudwatch needs cloudwatch_metrics (namespace, dimensions, requests, "
                "errors); add them, or write metrics: haproxy",
            )
        if self.prometheus is not None and self.metrics != "prometheus":
            raise PydanticCustomError(
                "relay",
                f"prometheus: is set but metrics is {self.metrics}; write metrics: prometheus, "
                "or remove prometheus:",
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _prometheus_defaults(cls, data: object) -> object:
        """`metrics: prometheus` alone reads HAProxy's exporter with the default queries."""
        if isinstance(data, dict) and data.get("metrics") == "prometheus":
            return {**data, "prometheus": data.get("prometheus") or {}}
        return data


class Approval(_Model):
    """Who must approve a deployment to an environment, and how long to wait for them."""

    required: bool = False
    timeout_seconds: Annotated[int, Field(ge=APPROVAL_TIMEOUT_MIN, le=APPROVAL_TIMEOUT_MAX)] = (
        DEFAULT_APPROVAL_TIMEOUT
    )
    approvers: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False
    block_on_alarms: list[AlarmName] = Field(default_factory=list)
    # Open-source Prefect does not authenticate who answers a form: with require_token, a name
    # counts only with that approver's token, whose sha256 is in `tokens_secret` (Secrets
    # Manager, not Prefect: Prefect's API hands its blocks' secrets to any caller).
    require_token: bool = False
    tokens_secret: SecretId = DEFAULT_TOKENS_SECRET


class ResourceAmounts(_Model):
    """CPU and memory of one container, as Kubernetes quantities."""

    cpu: Cpu
    memory: Memory


class Resources(_Model):
    """A pod's requests (what the scheduler reserves) and limits (what it may use)."""

    requests: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="100m", memory="128Mi")
    )
    limits: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="500m", memory="256Mi")
    )


class Kubernetes(_Model):
    """How a kubernetes environment reaches its cluster, and the size of its services.

    Cluster access, first that applies: `cluster` (a prefect-kubernetes
    KubernetesClusterConfig block, e.g. saved from an EKS kubeconfig), `eks_cluster` (an EKS
    cluster's name: endpoint and CA from eks:DescribeCluster, a token from STS, with the AWS
    credentials Relay uses everywhere), `kubeconfig` (a file on the worker) with `context`,
    in-cluster (the worker runs in a pod), else the default kubeconfig ($KUBECONFIG,
    ~/.kube/config) with `context`.
    """

    cluster: Annotated[str, Field(min_length=1)] | None = None
    eks_cluster: Annotated[str, Field(pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")] | None = None
    kubeconfig: Annotated[str, Field(min_length=1)] | None = None
    context: Annotated[str, Field(min_length=1)] | None = None
    replicas: Annotated[int, Field(ge=REPLICAS_MIN, le=REPLICAS_MAX)] = 2
    resources: Resources = Field(default_factory=Resources)
    progress_deadline_seconds: Annotated[
        int, Field(ge=PROGRESS_DEADLINE_MIN, le=PROGRESS_DEADLINE_MAX)
    ] = 600
    gateway_namespace: Namespace = "gateway-system"
    # How a canary's traffic is split: auto (Gateway API when its HTTPRoute CRD is served, else
    # replica ratio), gateway_api, replica_ratio, or alb (the AWS Load Balancer Controller's
    # weighted target groups, on EKS), whose load balancer is `alb_scheme`.
    traffic: Literal["auto", "gateway_api", "replica_ratio", "alb"] = "auto"
    alb_scheme: Literal["internal", "internet-facing"] = "internal"

    @model_validator(mode="after")
    def _one_way_in(self) -> Kubernetes:
        if self.eks_cluster is not None and (self.cluster or self.kubeconfig or self.context):
            raise PydanticCustomError(
                "relay",
                "eks_cluster reaches the cluster on its own: remove cluster, kubeconfig and "
                "context, or remove eks_cluster",
            )
        return self


class Environment(_Model):
    """A deployment target, in promotion order within the manifest.

    `secrets` has no default here: `Manifest` fills in "<environment name>-config", and makes
    approval required for the environment named prod, when the manifest does not say.
    """

    platform: Literal["docker", "kubernetes"] = "docker"
    port_offset: Annotated[int, Field(ge=0, le=PORT_OFFSET_MAX)] | None = None
    namespace: Namespace | None = None
    kubernetes: Kubernetes | None = None  # kubernetes only; None there means the defaults
    secrets: SecretId | None
    strategy: Literal["rolling", "blue_green", "canary"] = "rolling"
    canary_steps: list[int] = Field(default_factory=lambda: list(DEFAULT_CANARY_STEPS))
    approval: Approval = Field(default_factory=Approval)
    analysis: Analysis = Field(default_factory=Analysis)
    keep_previous_seconds: Annotated[float, Field(ge=0, le=KEEP_PREVIOUS_MAX)] = 30
    # How long a release must have served the environment before this one, before it may be
    # promoted here (Kargo's soak time); 0: no wait.
    soak_seconds: Annotated[int, Field(ge=0, le=SOAK_MAX)] = 0
    # How long a new version that took all traffic (canary, blue/green) is still judged, by
    # `analysis`'s absolute limits and alarms, before the previous one stops; a failure then
    # puts the previous version back (CodeDeploy's alarm rollback); 0: not watched.
    watch_seconds: Annotated[float, Field(ge=0, le=KEEP_PREVIOUS_MAX)] = 0
    smoke_tests: Command | None = None
    # The git branch whose pushes release into this environment (see relay/webhooks.py).
    branch: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _prometheus_queries_of_the_platform(self) -> Environment:
        prometheus = self.analysis.prometheus
        defaults = prometheus is not None and (
            prometheus.requests == HAPROXY_REQUESTS or prometheus.errors == HAPROXY_ERRORS
        )
        if self.platform == "kubernetes" and defaults:
            raise PydanticCustomError(
                "relay",
                "analysis.prometheus: the default requests and errors queries read Relay's "
                "HAProxy routers, which a kubernetes environment has not; write "
                "analysis.prometheus.requests and errors for your metrics (with {{version}} "
                "for the track)",
            )
        return self

    @property
    def cluster(self) -> Kubernetes:
        """The kubernetes settings, defaults filled in (for a kubernetes environment)."""
        return self.kubernetes or Kubernetes()

    def ports(self, service: Service) -> ServicePorts:
        """The public, blue and green host ports of `service` here (see `ServicePorts`)."""
        if self.platform != "docker":
            return ServicePorts(public=service.port, blue=service.port, green=service.port)
        return docker_ports(service.port, self.port_offset or 0)


def with_environment_defaults(raw: object) -> object:
    """Fill the defaults that depend on an environment's name into raw environment mappings."""
    if not isinstance(raw, dict):
        return raw
    return {name: _environment_defaults(name, env) for name, env in raw.items()}


def _environment_defaults(name: object, env: object) -> object:
    if not isinstance(env, dict):
        return env
    filled = {"secrets": f"{name}-config", **env}
    approval = filled.get("approval", {})
    if isinstance(approval, dict):
        filled["approval"] = {"required": name == PRODUCTION, **approval}
    return filled


def default_environments() -> dict[str, Environment]:
    """dev, staging and prod on docker; prod ships by canary after an approval."""
    return {
        "dev": Environment(port_offset=DEFAULT_PORT_OFFSETS["dev"], secrets="dev-config"),
        "staging": Environment(
            port_offset=DEFAULT_PORT_OFFSETS["staging"], secrets="staging-config"
        ),
        PRODUCTION: Environment(
            port_offset=DEFAULT_PORT_OFFSETS[PRODUCTION],
            secrets=f"{PRODUCTION}-config",
            strategy="canary",
            approval=Approval(required=True),
        ),
    }


class AllowedFinding(_Model):
    """A vulnerability accepted for a while, with the reason written down."""

    id: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]
    until: date


class ImageScan(_Model):
    """The image vulnerability gate: where findings come from and how many are too many."""

    source: Literal["none", "ecr"] = "none"
    fail_on: Literal["critical", "high", "medium", "low", "informational", "never"] = "high"
    allow: list[AllowedFinding] = Field(default_factory=list)


class Packages(_Model):
    """The gate on an image's installed Python packages: advisories from a PyPI JSON API
    (`<advisories>/<name>/<version>/json`, PyPI's own by default), judged like image_scan's
    findings, except that PyPI's advisories carry no severity: any or never."""

    fail_on: Literal["any", "never"] = "any"
    advisories: BaseUrl = DEFAULT_ADVISORIES
    allow: list[AllowedFinding] = Field(default_factory=list)


class SkippedCheck(_Model):
    """A compliance check this application does not apply, and why."""

    id: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]


class Compliance(_Model):
    """The compliance gate: checkov's checks and Relay's own policies, minus `skip`."""

    fail_on: Literal["any", "never"] = "any"
    skip: list[SkippedCheck] = Field(default_factory=list)


class Security(_Model):
    """The security gates that run between an image and any deployment of it."""

    packages: Packages = Field(default_factory=Packages)
    compliance: Compliance = Field(default_factory=Compliance)


class CloudWatch(_Model):
    """What Relay publishes to Amazon CloudWatch about deliveries."""

    metrics: bool = True
    namespace: Annotated[str, Field(min_length=1)] = "Relay"
    logs: bool = True
    log_group_prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./#-]*[A-Za-z0-9_#-]$")] = (
        "/relay"
    )
    # Every deployment, rollback and rejected approval as an EventBridge event (source relay)
    # on this bus; Prefect events are emitted either way.
    events: bool = True
    event_bus: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-/:]{1,1600}$")] = "default"
    # The services' own output (docker platform): each container logs through Docker's awslogs
    # driver to /<app>/<environment>/<service>, a group kept this many days.
    service_logs: bool = False
    service_log_retention_days: Literal[
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
        2922, 3288, 3653,
    ] = 30  # fmt: skip


class Manifest(_Model):
    """A validated `relay.yaml`. Build it with `load_manifest` or `parse_manifest`."""

    app: AppName
    registry: RegistryAddress = DEFAULT_REGISTRY
    services: Annotated[dict[ServiceName, Service], Field(min_length=1)]
    environments: Annotated[dict[EnvironmentName, Environment], Field(min_length=1)] = Field(
        default_factory=default_environments
    )
    e2e_tests: Command | None = None
    # Kubernetes: the image the end-to-end tests run in, as a Job in the environment's
    # namespace where the services' cluster DNS names resolve (without it: on the worker).
    e2e_image: Annotated[str, Field(min_length=1)] | None = None
    image_scan: ImageScan = Field(default_factory=ImageScan)
    security: Security = Field(default_factory=Security)
    cloudwatch: CloudWatch = Field(default_factory=CloudWatch)

    _root: Path = PrivateAttr(default=Path("."))
    _source: Path = PrivateAttr(default=Path("relay.yaml"))

    @field_validator("environments", mode="before")
    @classmethod
    def _fill_environment_defaults(cls, value: object) -> object:
        return with_environment_defaults(value)

    @property
    def root(self) -> Path:
        """The manifest's directory (absolute): service paths and e2e tests start here."""
        return self._root

    @property
    def source(self) -> Path:
        """The manifest file as messages name it: in the user's repository when it was read
        from a checkout in Relay's cache (`load_manifest(shown_as=...)`)."""
        return self._source

    def dependency_graph(self) -> dict[str, list[str]]:
        """Each service's `depends_on`, for `relay.graph`."""
        return {name: list(service.depends_on) for name, service in self.services.items()}

    def check_services(self, names: Sequence[str]) -> None:
        """Raise TerminalError naming every unknown service in `names` (a command's input)."""
        unknown = sorted(set(names) - set(self.services))
        if unknown:
            raise TerminalError(
                f"{self.source}: no service named {', '.join(unknown)}; "
                f"use one of: {', '.join(self.services)}"
            )

    def check_environment(self, name: str) -> None:
        """Raise TerminalError when `name` is not one of the manifest's environments."""
        if name not in self.environments:
            raise TerminalError(
                f"{self.source}: no environment {name!r}; "
                f"use one of: {', '.join(self.environments)}"
            )

    def image_repository(self, service_name: str) -> str:
        """Where a service's images go: `<registry>/<app>/<service>`."""
        if service_name not in self.services:
            known = ", ".join(self.services)
            raise ValueError(f"unknown service {service_name!r}; use one of: {known}")
        return f"{self.registry}/{self.app}/{service_name}"
