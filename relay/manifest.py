"""The release manifest, `relay.yaml`: what an application's services are and where they go.

A complete example, with every default written out:

```yaml
app: shop                      # required; lowercase letters, digits and '-'; used in container
                               # names, image repositories and labels
registry: 127.0.0.1:5000       # optional; images go to <registry>/<app>/<service>
services:                      # required, at least one; names match ^[a-z][a-z0-9-]{0,39}$
  orders:
    path: services/orders      # required; relative to this file's directory, inside it (no '..')
    dockerfile: Dockerfile     # relative to path
    build_args: {}             # Docker build arguments (part of the image key; GIT_SHA is
                               # always passed, and never part of the key)
    port: 8002                 # required, 1024..65535: the port the service listens on; unique
    health: /healthz           # must start with '/'
    depends_on: [inventory, payments]   # names of other services; no cycles
    public: false              # kubernetes: also reachable from the gateway namespace (its
                               # NetworkPolicy admits only the services that depend on it)
    runner: container          # container: build, unit tests, SAST and integration tests run
                               # in a container (the stage image below); host: on the worker
                               # with Relay's own Python (the exception, for trusted code)
    test_target: test          # a stage of the Dockerfile with the service's test tools: the
                               # stage image (default: the stage named `test` when there is
                               # one, else the service's own image)
    stage_image: null          # or an image to run the stages in, such as python:3.12-slim,
    setup: null                # with a command run once in it (its layer is cached by the
                               # content of the files it names), e.g.
                               # "pip install -r requirements.txt -r requirements-dev.txt"
    setup_files: []            # more files the setup reads, relative to path
    # Stage commands: a string (split like a shell does, but run without one), a list of
    # arguments, or null (no such stage). Left out, they follow the service's language:
    # Python (pyproject.toml, requirements.txt, setup.py or *.py) the ones shown, the tests
    # only where their folder exists; Go (go.mod) `go vet ./...` and `go test ./...`;
    # Node (package.json) `npm test`; anything else none.
    build: "python -m compileall -q ."
    unit_tests: "python -m pytest -q tests/unit"
    integration_tests: "python -m pytest -q tests/integration"
    sast:                      # or null: no static analysis
      command: "bandit -r . -f json -x ./tests"   # Python's default; none for other languages
      fail_on: high            # low | medium | high | never
      sarif: null              # for a command other than bandit: the SARIF 2.1.0 file it
                               # writes, relative to path (e.g. semgrep.sarif); its results
                               # are judged. Without it: bandit's JSON, else the exit code
    secret_keys: [PAYMENTS_API_KEY]   # optional: the keys this service needs from its
                               # environment's secret; only these are injected, and a missing
                               # one stops the deployment before anything changes.
                               # [] (the default): every key of the secret
    secrets:                   # optional, per environment: a secret of this service's own,
      prod: prod-orders-config #   whose keys are laid over the environment's
  inventory:
    path: services/inventory
    port: 8001
  payments:
    path: services/payments
    port: 8003
environments:                  # in promotion order; when the key is absent: dev, staging, prod
  dev:                         # names match ^[a-z][a-z0-9-]{0,19}$
    branch: develop            # optional: the git branch whose pushes release into this
                               # environment (`relay webhook serve`); a release goes through
                               # every environment before it, too
    platform: docker           # docker | kubernetes
    port_offset: 10000         # docker only, required there: public port = port + port_offset
    secrets: dev-config        # AWS Secrets Manager secret id, a JSON object whose keys become
                               # the services' environment variables; default
                               # "<environment>-config"; null: no configuration secret
    strategy: rolling          # rolling | blue_green | canary
    canary_steps: [10, 50, 100]   # traffic percentages: increasing, 1..100, ending at 100
    approval:
      required: false          # default: true for an environment named prod, else false
      timeout_seconds: 3600    # 5..604800
      approvers: []            # user names; [] means anyone
      allow_self_approval: false
      block_on_alarms: []      # CloudWatch alarm names: no approval is asked (nor accepted)
                               # while one of them is in ALARM
      require_token: false     # true: an approval counts only with the approver's own token,
                               # checked against sha256 hashes kept out of band in
      tokens_secret: relay/approvers   # this AWS Secrets Manager secret ({"alice": "sha256:…"})
    analysis:                  # canary: how the new version is judged at each canary step
      interval_seconds: 10     # 1..3600: how long each step runs before it is judged
      max_error_rate: 0.05     # 0..1: highest fraction of 5xx among the new version's responses
      max_response_ms: 1000    # >= 1: highest average response time of the new version
      min_requests: 20         # >= 1: fewer requests to the new version in a step is inconclusive
      on_inconclusive: fail    # fail | pause (ask a person) | continue (count it as passed)
      cloudwatch_alarms: []    # CloudWatch alarm names: a step fails while one is in ALARM
    keep_previous_seconds: 30  # blue_green, 0..86400: the previous version keeps running this
                               # long after the switch, so that switching back is instant
    smoke_tests: "python -m pytest -q tests/smoke"   # optional; run against the new version
                               # directly, before it gets traffic, with SERVICE_URL set to it
  staging:
    port_offset: 12000
  prod:
    branch: main
    platform: kubernetes
    namespace: shop-prod       # kubernetes only, required there
    strategy: canary
    kubernetes:                # kubernetes only; every key optional, defaults shown
      cluster: null            # a prefect-kubernetes KubernetesClusterConfig block name, or
      kubeconfig: null         # a kubeconfig file (with `context`); neither: in-cluster
      context: null            # (a pod's service account), else $KUBECONFIG / ~/.kube/config
      replicas: 2              # 1..100 pods per service
      resources:
        requests: {cpu: 100m, memory: 128Mi}
        limits: {cpu: 500m, memory: 256Mi}
      progress_deadline_seconds: 600   # a rollout without progress this long is rolled back
      gateway_namespace: gateway-system   # where public services' traffic comes from
e2e_tests: "python -m pytest -q tests/e2e"   # optional; app-level end-to-end tests, run from
                                             # this file's directory
image_scan:                    # the vulnerability gate on pushed images (before promotion)
  source: none                 # none | ecr (Amazon ECR's scan findings of the image's digest)
  fail_on: high                # critical | high | medium | low | informational | never
  allow:                       # accepted findings, each with a reason and an expiry date
    - id: CVE-2024-0001
      reason: not reachable from our code
      until: 2027-01-31
security:                      # the security gates, run after each image is built or reused
                               # and before it is deployed, and again before a promotion
                               # deploys anything (advisories are published after builds)
  packages:                    # the image's installed Python packages: a CycloneDX SBOM, and
                               # their advisories in PyPI's vulnerability data (pip-audit)
    fail_on: any               # any (every advisory not allowed stops) | never (report only)
    advisories: https://pypi.org/pypi   # a PyPI JSON API: <url>/<name>/<version>/json
    allow:                     # accepted advisories (by id or an alias such as a CVE)
      - id: PYSEC-2023-228
        reason: pip is never run by the services
        until: 2027-01-31
  compliance:                  # checkov on each Dockerfile (and rendered Kubernetes objects),
                               # and Relay's own policies (see relay/compliance.py): RELAY_DIGEST
                               # (prod by digest), RELAY_NO_LATEST, RELAY_APPROVAL (prod needs
                               # an approval), RELAY_LIMITS (kubernetes), RELAY_NON_ROOT
    fail_on: any               # any | never (report only)
    skip:                      # checks not applied to this application, each with the reason
      - id: CKV_DOCKER_2
        reason: Relay checks /healthz itself before traffic is switched
cloudwatch:                    # delivery metrics and pipeline logs in Amazon CloudWatch
  metrics: true                # deployments, failures, lead time, time to restore
  namespace: Relay
  logs: true                   # each run's log lines to the log group /relay/<service>
```

`registry` may be an Amazon ECR address (`<account>.dkr.ecr.<region>.amazonaws.com`): then
Relay creates each repository (immutable tags, scan on push) and logs Docker in with ECR's
authorization token before pushing.

When `environments` is absent, the defaults are dev (docker, port_offset 10000), staging
(docker, port_offset 12000) and prod (docker, port_offset 14000, strategy canary, approval
required).

`load_manifest` reports every problem in the file at once, each naming the file, the field and
what to write instead, by raising `ManifestError`. Validation has two passes: pydantic checks
the structure of each part, then plain functions check what spans parts (dependencies, ports,
platform settings, files on disk). When pydantic fails, the second pass still runs over
whatever of the raw document it can read, so one run shows all the problems.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from relay.dockerfile import stage_names
from relay.errors import ManifestError, TerminalError
from relay.graph import find_cycles

__all__ = [
    "Analysis",
    "Kubernetes",
    "ResourceAmounts",
    "Resources",
    "Approval",
    "Command",
    "Environment",
    "Manifest",
    "Sast",
    "Security",
    "Service",
    "ServicePorts",
    "default_environments",
    "load_manifest",
    "parse_manifest",
]

# --- defaults and limits ---------------------------------------------------------------------

DEFAULT_REGISTRY = "127.0.0.1:5000"
DEFAULT_DOCKERFILE = "Dockerfile"
DEFAULT_HEALTH = "/healthz"
DEFAULT_ADVISORIES = "https://pypi.org/pypi"  # PyPI's JSON API, which carries its advisories
DEFAULT_CANARY_STEPS = (10, 50, 100)
DEFAULT_APPROVAL_TIMEOUT = 3600
DEFAULT_TOKENS_SECRET = "relay/approvers"  # Secrets Manager: approver name -> sha256 of token
# The default environments' port offsets, in promotion order (see `default_environments`).
DEFAULT_PORT_OFFSETS = {"dev": 10_000, "staging": 12_000, "prod": 14_000}
PRODUCTION = "prod"

PORT_MIN = 1024
PORT_MAX = 65535
PORT_OFFSET_MAX = PORT_MAX - PORT_MIN
# Host ports of the docker platform stay below Linux's ephemeral range (32768-60999): there an
# outgoing connection's local port (say, a client of the Prefect API in TIME_WAIT) can hold the
# very port a router needs to listen on, and the deploy fails with "address in use".
DOCKER_PORT_MAX = 32767
APPROVAL_TIMEOUT_MIN = 5
APPROVAL_TIMEOUT_MAX = 604_800
ANALYSIS_INTERVAL_MIN = 1
ANALYSIS_INTERVAL_MAX = 3600
KEEP_PREVIOUS_MAX = 86_400
REPLICAS_MIN = 1
REPLICAS_MAX = 100
PROGRESS_DEADLINE_MIN = 5
PROGRESS_DEADLINE_MAX = 3600
# On docker a new container starts next to the old one on host networking, so the two cannot
# share a port: each service has a public port (the router's) and two slot ports above it.
BLUE_SLOT = 100
GREEN_SLOT = 200

_SERVICE_NAME = r"^[a-z][a-z0-9-]{0,39}$"
_ENVIRONMENT_NAME = r"^[a-z][a-z0-9-]{0,19}$"
_APP_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"
_NAMESPACE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_VARIABLE = r"[A-Za-z_][A-Za-z0-9_]*"

# --- messages: "<what is wrong>; <what to write instead>" -------------------------------------

BAD_NAME = "{value!r} is not a valid {kind} name; use {rule}, such as {example!r}"
PATH_ABSOLUTE = "{value!r} is absolute; write a path relative to {base}, such as {example!r}"
PATH_ESCAPES = "{value!r} goes up with '..'; write a path inside {base}, such as {example!r}"
PATH_EMPTY = "is empty; write a path relative to {base}, such as {example!r}"
BAD_VARIABLE = (
    "{value!r} cannot be an environment variable name; use letters, digits and '_', not "
    "starting with a digit, such as 'DATABASE_URL'"
)
UNKNOWN_SECRET_ENVIRONMENT = "no environment {name!r}; write secrets for one of: {known}"
HEALTH_NOT_ABSOLUTE = "{value!r} does not start with '/'; write a URL path such as '/healthz'"
URL_INVALID = "{value!r} is not an http(s) URL; write one such as 'https://pypi.org/pypi'"
REGISTRY_INVALID = (
    "{value!r} is not a registry address; write host:port without a scheme, "
    "such as '127.0.0.1:5000'"
)
COMMAND_HINT = "write a command such as 'make test', or a list such as [make, test]"
COMMAND_EMPTY = f"is empty; {COMMAND_HINT}"
COMMAND_UNSPLITTABLE = (
    "{value!r} cannot be split into arguments ({reason}); close the quote or write the command "
    "as a list, such as [make, test]"
)
UNKNOWN_KEY_CLOSE = "unknown key; did you mean {suggestion!r}?"
UNKNOWN_KEY = "unknown key; remove it or use one of: {allowed}"
UNKNOWN_SERVICE = "unknown service {name!r}; write one of: {known}"
DID_YOU_MEAN = " (did you mean {suggestion!r}?)"
SELF_DEPENDENCY = "{name!r} depends on itself; remove it from its own depends_on"
REPEATED_DEPENDENCY = "{name!r} is listed twice; remove the repeat"
DEPENDENCY_CYCLE = "dependency cycle {cycle}; remove one of these depends_on entries"
DUPLICATE_PORT = "{port} is already used by services.{other}; give each service its own port"
SAME_ENV_PORT_CLASH = (
    "port {port} in environments.{env} is both {first} and {second}; on docker each service "
    f"also takes the two slot ports {BLUE_SLOT} and {GREEN_SLOT} above its public port, "
    f"so choose service ports that are not {BLUE_SLOT} or {GREEN_SLOT} apart"
)
CROSS_ENV_PORT_CLASH = (
    "port {port} is both {first} and {second}; choose port_offset values at least {gap} apart"
)
PORT_TOO_HIGH = (
    "services.{service} would get port {port} in environments.{env} ({detail}), above "
    f"{DOCKER_PORT_MAX} (ports above it are Linux's ephemeral range, where outgoing "
    f"connections take their local ports); {{fix}}"
)
PORT_OFFSET_MISSING = (
    "missing; docker environments need a port_offset (public port = service port + "
    "port_offset), such as port_offset: {example}"
)
NAMESPACE_MISSING = (
    "missing; kubernetes environments need a namespace, such as namespace: {example}"
)
NAMESPACE_NOT_ON_DOCKER = (
    "only kubernetes environments use a namespace; remove it, or set platform: kubernetes"
)
PORT_OFFSET_NOT_ON_KUBERNETES = (
    "only docker environments use port_offset; remove it, or set platform: docker"
)
KUBERNETES_NOT_ON_DOCKER = (
    "only kubernetes environments use kubernetes settings; remove it, or set platform: kubernetes"
)
CLUSTER_TWICE = (
    "cluster (a KubernetesClusterConfig block) and kubeconfig (a file) both name a cluster; "
    "keep one of them"
)
BAD_QUANTITY = "{value!r} is not a {kind} quantity; write one such as {example!r}"
CANARY_EMPTY = "is empty; write increasing traffic percentages ending at 100, such as [10, 50, 100]"
CANARY_OUT_OF_RANGE = "{value} is not a traffic weight; write a percentage from 1 to 100"
CANARY_NOT_INCREASING = (
    "{value} is not above the step before it ({previous}); write each weight larger than the "
    "last, such as [10, 50, 100]"
)
CANARY_END = (
    "ends at {last}, not 100; end with 100 so the new version finally takes all traffic, "
    "such as [10, 50, 100]"
)
DIRECTORY_MISSING = "directory {path!r} does not exist in {root}; create it or correct the path"
LINK_ESCAPES = (
    "{link!r} is a symbolic link to {target}, outside the repository ({root}); Relay builds and "
    "tests only what the repository holds: replace the link with the files, or correct the path"
)
SETUP_WITHOUT_IMAGE = (
    "needs stage_image, the image the setup runs in (such as python:3.12-slim); or move the "
    "setup into a `test` stage of the Dockerfile and write test_target: test"
)
TARGET_AND_IMAGE = "test_target and stage_image both name where the stages run; keep one of them"
CONTAINER_ONLY = "applies to runner: container only; remove it, or write runner: container"
TARGET_MISSING = (
    "{target!r} is not a stage of {file} (it has: {stages}); add `FROM ... AS {target}` to it, "
    "or write the name of a stage it has"
)
DOCKERFILE_MISSING = (
    "{file!r} does not exist; add it or set dockerfile to a file relative to {path!r}"
)
FILE_MISSING = "file not found; create it (see relay/manifest.py for an example) or fix the path"
FILE_UNREADABLE = "cannot read the file ({reason}); check its permissions"
FILE_EMPTY = "the file is empty; write a release manifest with at least 'app:' and 'services:'"
NOT_A_MAPPING = (
    "the top level is {kind}, not a mapping; start the file with keys such as 'app: shop' and "
    "'services:'"
)
YAML_SYNTAX = "invalid YAML: {problem}{context}; check the indentation and quoting there"
NAME_NOT_TEXT = "a {kind} name must be text {got}; write a name such as {example!r}"
NOT_A_MAPPING_FIELD = (
    "Input should be a mapping {got}; write keys indented below it, such as {example}"
)
SCHEMA_HINT = "see the example at the top of relay/manifest.py"


def _custom(message: str) -> PydanticCustomError:
    """A pydantic error whose message is final; without a context pydantic does not format it."""
    return PydanticCustomError("relay", message)


# --- field types -----------------------------------------------------------------------------


# kind -> (pattern, rule in words, example)
_NAME_RULES = {
    "app": (_APP_NAME, "1-40 lowercase letters, digits or '-'", "shop"),
    "service": (_SERVICE_NAME, "1-40 lowercase letters, digits or '-', first a letter", "orders"),
    "environment": (
        _ENVIRONMENT_NAME,
        "1-20 lowercase letters, digits or '-', first a letter",
        "staging",
    ),
    "namespace": (_NAMESPACE, "1-63 lowercase letters, digits or '-'", "shop-prod"),
}


def _name(kind: str) -> AfterValidator:
    """A validator for a name of `kind`, with the rule and an example in its error."""
    pattern, rule, example = _NAME_RULES[kind]
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise _custom(BAD_NAME.format(value=value, kind=kind, rule=rule, example=example))
        return value

    return AfterValidator(check)


AppName = Annotated[str, _name("app")]
ServiceName = Annotated[str, _name("service")]
EnvironmentName = Annotated[str, _name("environment")]
Namespace = Annotated[str, _name("namespace")]


def _relative_path(base: str, example: str) -> Callable[[str], str]:
    """A validator for a path that must stay inside `base`: not absolute, no '..'."""

    def check(value: str) -> str:
        path = PurePosixPath(value)
        if not value:
            raise _custom(PATH_EMPTY.format(base=base, example=example))
        if path.is_absolute():
            raise _custom(PATH_ABSOLUTE.format(value=value, base=base, example=example))
        if ".." in path.parts:
            raise _custom(PATH_ESCAPES.format(value=value, base=base, example=example))
        return value

    return check


ServicePath = Annotated[
    str, AfterValidator(_relative_path("the directory of relay.yaml", "services/orders"))
]
DockerfilePath = Annotated[
    str, AfterValidator(_relative_path("the service's path", DEFAULT_DOCKERFILE))
]
SarifPath = Annotated[str, AfterValidator(_relative_path("the service's path", "sast.sarif"))]
SetupPath = Annotated[
    str, AfterValidator(_relative_path("the service's path", "requirements-dev.txt"))
]


def _check_health(value: str) -> str:
    if not value.startswith("/"):
        raise _custom(HEALTH_NOT_ABSOLUTE.format(value=value))
    return value


def _check_registry(value: str) -> str:
    if not value or "://" in value or value.endswith("/") or any(c.isspace() for c in value):
        raise _custom(REGISTRY_INVALID.format(value=value))
    return value


def _split_command(value: object) -> object:
    """A string becomes its shell-like split; a list is kept; anything else fails as a list."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise _custom(COMMAND_UNSPLITTABLE.format(value=value, reason=exc)) from None
        if not argv:
            raise _custom(COMMAND_EMPTY)
        return argv
    if isinstance(value, list) and not value:
        raise _custom(COMMAND_EMPTY)
    return value


Command = Annotated[list[str], BeforeValidator(_split_command)]
"""An argv list. In YAML either a string, split like a shell would (but run without one), or a
non-empty list of strings."""


Port = Annotated[int, Field(ge=PORT_MIN, le=PORT_MAX)]


def _check_variable(value: str) -> str:
    if not re.fullmatch(_VARIABLE, value):
        raise _custom(BAD_VARIABLE.format(value=value))
    return value


SecretKey = Annotated[str, AfterValidator(_check_variable)]
SecretId = Annotated[str, Field(min_length=1)]
AlarmName = Annotated[str, Field(min_length=1)]

_QUANTITIES = {
    # kind -> (pattern, example): Kubernetes resource quantities, as Relay accepts them
    "cpu": (r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$", "250m"),
    "memory": (r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$", "256Mi"),
}


def _quantity(kind: str) -> AfterValidator:
    """A validator for a Kubernetes quantity of `kind`; strings only, so YAML's 0.5 is an error
    that says to write '500m', not a float that would render differently."""
    pattern, example = _QUANTITIES[kind]

    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise _custom(BAD_QUANTITY.format(value=value, kind=kind, example=example))
        return value

    return AfterValidator(check)


Cpu = Annotated[str, _quantity("cpu")]
Memory = Annotated[str, _quantity("memory")]

# --- models ----------------------------------------------------------------------------------


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
    health: Annotated[str, AfterValidator(_check_health)] = DEFAULT_HEALTH
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
    sast: Sast | None = Field(default_factory=Sast)
    secret_keys: list[SecretKey] = Field(default_factory=list)
    secrets: dict[str, SecretId] = Field(default_factory=dict)

    def directory(self, root: Path) -> Path:
        """The service's source directory, given the manifest's directory."""
        return root / self.path

    def dockerfile_path(self, root: Path) -> Path:
        """The service's Dockerfile, given the manifest's directory."""
        return self.directory(root) / self.dockerfile


class Analysis(_Model):
    """How a canary is judged at each step, from the new version's own requests.

    A step with fewer than `min_requests` says nothing either way: `on_inconclusive` decides
    whether that fails the deployment, pauses it for a person, or counts as passed.
    """

    interval_seconds: Annotated[
        float, Field(ge=ANALYSIS_INTERVAL_MIN, le=ANALYSIS_INTERVAL_MAX)
    ] = 10
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_response_ms: Annotated[int, Field(ge=1)] = 1000
    min_requests: Annotated[int, Field(ge=1)] = 20
    on_inconclusive: Literal["fail", "pause", "continue"] = "fail"
    cloudwatch_alarms: list[AlarmName] = Field(default_factory=list)


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


@dataclass(frozen=True)
class ServicePorts:
    """The host ports of one service in one environment.

    On docker, containers share the host's network, so a new container cannot take the port of
    the one it replaces while both run. Each service therefore has two slot ports, blue and
    green, used in turn by successive versions, and a public port where the router (HAProxy)
    listens and sends traffic to the live slot(s). On kubernetes every pod has its own address,
    so all three are the service's own port.
    """

    public: int
    blue: int
    green: int


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
    KubernetesClusterConfig block, e.g. saved from an EKS kubeconfig), `kubeconfig` (a file on
    the worker) with `context`, in-cluster (the worker runs in a pod), else the default
    kubeconfig ($KUBECONFIG, ~/.kube/config) with `context`.
    """

    cluster: Annotated[str, Field(min_length=1)] | None = None
    kubeconfig: Annotated[str, Field(min_length=1)] | None = None
    context: Annotated[str, Field(min_length=1)] | None = None
    replicas: Annotated[int, Field(ge=REPLICAS_MIN, le=REPLICAS_MAX)] = 2
    resources: Resources = Field(default_factory=Resources)
    progress_deadline_seconds: Annotated[
        int, Field(ge=PROGRESS_DEADLINE_MIN, le=PROGRESS_DEADLINE_MAX)
    ] = 600
    gateway_namespace: Namespace = "gateway-system"


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
    smoke_tests: Command | None = None
    # The git branch whose pushes release into this environment (see relay/webhooks.py).
    branch: Annotated[str, Field(min_length=1)] | None = None

    @property
    def cluster(self) -> Kubernetes:
        """The kubernetes settings, defaults filled in (for a kubernetes environment)."""
        return self.kubernetes or Kubernetes()

    def ports(self, service: Service) -> ServicePorts:
        """The public, blue and green host ports of `service` here (see `ServicePorts`)."""
        if self.platform != "docker":
            return ServicePorts(public=service.port, blue=service.port, green=service.port)
        public = service.port + (self.port_offset or 0)
        return ServicePorts(public=public, blue=public + BLUE_SLOT, green=public + GREEN_SLOT)


def _with_environment_defaults(raw: object) -> object:
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


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise _custom(URL_INVALID.format(value=value))
    return value.rstrip("/")


class Packages(_Model):
    """The gate on an image's installed Python packages: advisories from a PyPI JSON API
    (`<advisories>/<name>/<version>/json`, PyPI's own by default), judged like image_scan's
    findings, except that PyPI's advisories carry no severity: any or never."""

    fail_on: Literal["any", "never"] = "any"
    advisories: Annotated[str, AfterValidator(_check_url)] = DEFAULT_ADVISORIES
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


class Manifest(_Model):
    """A validated `relay.yaml`. Build it with `load_manifest` or `parse_manifest`."""

    app: AppName
    registry: Annotated[str, AfterValidator(_check_registry)] = DEFAULT_REGISTRY
    services: Annotated[dict[ServiceName, Service], Field(min_length=1)]
    environments: Annotated[dict[EnvironmentName, Environment], Field(min_length=1)] = Field(
        default_factory=default_environments
    )
    e2e_tests: Command | None = None
    image_scan: ImageScan = Field(default_factory=ImageScan)
    security: Security = Field(default_factory=Security)
    cloudwatch: CloudWatch = Field(default_factory=CloudWatch)

    _root: Path = PrivateAttr(default=Path("."))
    _source: Path = PrivateAttr(default=Path("relay.yaml"))

    @field_validator("environments", mode="before")
    @classmethod
    def _fill_environment_defaults(cls, value: object) -> object:
        return _with_environment_defaults(value)

    @property
    def root(self) -> Path:
        """The manifest's directory (absolute): service paths and e2e tests start here."""
        return self._root

    @property
    def source(self) -> Path:
        """The manifest file."""
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


# --- pydantic errors, in the manifest's words ------------------------------------------------

_MODELS_BY_SHAPE: dict[tuple[str, ...], type[BaseModel]] = {
    (): Manifest,
    ("services", "*"): Service,
    ("services", "*", "sast"): Sast,
    ("environments", "*"): Environment,
    ("environments", "*", "approval"): Approval,
    ("environments", "*", "analysis"): Analysis,
    ("environments", "*", "kubernetes"): Kubernetes,
    ("environments", "*", "kubernetes", "resources"): Resources,
    ("environments", "*", "kubernetes", "resources", "requests"): ResourceAmounts,
    ("environments", "*", "kubernetes", "resources", "limits"): ResourceAmounts,
    ("image_scan",): ImageScan,
    ("image_scan", "allow", "*"): AllowedFinding,
    ("security",): Security,
    ("security", "packages"): Packages,
    ("security", "packages", "allow", "*"): AllowedFinding,
    ("security", "compliance"): Compliance,
    ("security", "compliance", "skip", "*"): SkippedCheck,
    ("cloudwatch",): CloudWatch,
}
# Example values used in hints, by field name.
_EXAMPLES = {
    "app": "shop",
    "services": "{orders: {path: services/orders, port: 8002}}",
    "environments": "{dev: {port_offset: 10000}}",
    "path": "services/orders",
    "port": "8080",
    "port_offset": "10000",
    "timeout_seconds": "3600",
    "canary_steps": "[10, 50, 100]",
    "depends_on": "[inventory, payments]",
    "approvers": "[alice, bob]",
    "secrets": "dev-config",
    "interval_seconds": "10",
    "max_error_rate": "0.05 (5%)",
    "max_response_ms": "1000",
    "min_requests": "20",
    "keep_previous_seconds": "30",
    "branch": "main",
    "secret_keys": "[DATABASE_URL]",
    "cloudwatch_alarms": "[shop-prod-5xx]",
    "block_on_alarms": "[shop-prod-5xx]",
    "tokens_secret": "relay/approvers",
    "until": "2027-01-31",
    "reason": "not reachable from our code",
    "id": "CVE-2024-0001",
    "namespace": "Relay",
    "log_group_prefix": "/relay",
    "sarif": "sast.sarif",
    "advisories": "https://pypi.org/pypi",
    "cluster": "shop-eks (a KubernetesClusterConfig block name)",
    "kubeconfig": "/etc/relay/kubeconfig",
    "context": "shop-prod",
    "replicas": "2",
    "progress_deadline_seconds": "600",
    "gateway_namespace": "gateway-system",
    "cpu": "250m",
    "memory": "256Mi",
    "public": "true",
    "build_args": "{PYTHON_VERSION: '3.12'}",
    "runner": "container",
    "test_target": "test",
    "stage_image": "python:3.12-slim",
    "setup_files": "[requirements-dev.txt]",
}
_MAPPING_EXAMPLES: dict[type[BaseModel], str] = {
    Service: "{path: services/orders, port: 8002}",
    Sast: "{fail_on: high}",
    Environment: "{port_offset: 10000}",
    Approval: "{required: true}",
    Analysis: "{max_error_rate: 0.05}",
    Kubernetes: "{replicas: 2, progress_deadline_seconds: 600}",
    Resources: "{requests: {cpu: 100m, memory: 128Mi}, limits: {cpu: 500m, memory: 256Mi}}",
    ResourceAmounts: "{cpu: 250m, memory: 256Mi}",
}
_COMMAND_FIELDS = {
    "setup",
    "build",
    "unit_tests",
    "integration_tests",
    "e2e_tests",
    "smoke_tests",
    "command",
}
_ITEM_EXAMPLES = {
    "canary_steps": "50",
    "depends_on": "inventory",
    "approvers": "alice",
    "secret_keys": "DATABASE_URL",
    "cloudwatch_alarms": "shop-prod-5xx",
    "block_on_alarms": "shop-prod-5xx",
}
# (lowest, highest or None for no limit) of the fields with a range.
_RANGES: dict[str, tuple[int, int | None]] = {
    "port": (PORT_MIN, PORT_MAX),
    "port_offset": (0, PORT_OFFSET_MAX),
    "timeout_seconds": (APPROVAL_TIMEOUT_MIN, APPROVAL_TIMEOUT_MAX),
    "interval_seconds": (ANALYSIS_INTERVAL_MIN, ANALYSIS_INTERVAL_MAX),
    "max_error_rate": (0, 1),
    "max_response_ms": (1, None),
    "min_requests": (1, None),
    "keep_previous_seconds": (0, KEEP_PREVIOUS_MAX),
    "replicas": (REPLICAS_MIN, REPLICAS_MAX),
    "progress_deadline_seconds": (PROGRESS_DEADLINE_MIN, PROGRESS_DEADLINE_MAX),
}
# Fields that take any number, not just whole ones.
_FRACTIONAL = {"interval_seconds", "max_error_rate", "keep_previous_seconds"}
_INT_ERRORS = {"int_type", "int_parsing", "int_from_float"}
_FLOAT_ERRORS = {"float_type", "float_parsing"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
_MAPPING_ERRORS = {"dict_type", "model_type", "model_attributes_type"}


# Lists of mappings: an int inside them is an index, not a key.
_LISTS = {"allow", "skip"}


def _format_loc(loc: Sequence[str | int]) -> str:
    """`("services", "orders", "depends_on", 1)` -> `"services.orders.depends_on[1]"`.

    An int is a list index at the end of a location or inside a list of mappings (`_LISTS`);
    anywhere else it is a mapping key YAML read as a number.
    """
    text = ""
    for position, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(part, int) and (position == len(loc) - 1 or loc[position - 1] in _LISTS):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _field_name(loc: Sequence[str | int]) -> tuple[str, bool]:
    """The last field name in `loc`, and whether `loc` points at an item of that field's list."""
    is_item = bool(loc) and isinstance(loc[-1], int)
    names = [part for part in loc[:-1] if isinstance(part, str)] if is_item else list(loc)
    return (str(names[-1]) if names else "", is_item)


def _shape(loc: Sequence[str | int]) -> tuple[str, ...]:
    parts = ["*" if isinstance(part, int) else str(part) for part in loc]
    if len(parts) >= 2 and parts[0] in ("services", "environments"):
        parts[1] = "*"
    return tuple(parts)


def _got(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(loc: Sequence[str | int]) -> str:
    model = _MODELS_BY_SHAPE.get(_shape(loc[:-1]))
    allowed = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return UNKNOWN_KEY_CLOSE.format(suggestion=close[0])
    return UNKNOWN_KEY.format(allowed=", ".join(allowed))


def _hint(error: ErrorDetails, field: str, is_item: bool) -> str:
    """What to write instead, for a pydantic error on `field`."""
    kind = error["type"]
    example = (_ITEM_EXAMPLES if is_item else _EXAMPLES).get(field)
    if kind in _INT_ERRORS:
        return f"write a whole number such as {example or 10}"
    if kind in _FLOAT_ERRORS:
        return f"write a number such as {example or 10}"
    if kind in _RANGE_ERRORS and field in _RANGES:
        low, high = _RANGES[field]
        number = "number" if field in _FRACTIONAL else "whole number"
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        such_as = f", such as {example}" if field in _FRACTIONAL and example else ""
        return f"write a {number} {span}{such_as}"
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        return "write one of: " + ", ".join(part.strip("' ") for part in _split_choices(expected))
    if kind == "string_pattern_mismatch" and example:
        return f"write a value such as {example}"
    if kind.startswith("date_"):
        return f"write a date as YYYY-MM-DD without quotes, such as {_EXAMPLES['until']}"
    if kind in {"bool_type", "bool_parsing"}:
        return "write true or false"
    if kind == "string_type" and field in _QUANTITIES:
        return f"write a {field} quantity as text, such as {example}"
    if kind == "string_type":
        return "write text; quote it if YAML would read it as something else, such as '1.0'"
    if kind == "list_type" and field in _COMMAND_FIELDS:
        return COMMAND_HINT
    if kind == "list_type":
        return f"write a list, such as {example or '[a, b]'}"
    if kind == "too_short":
        return f"write at least one entry, such as {example}"
    if kind == "string_too_short":
        return f"write a value, such as {example}" if example else "write a value"
    return SCHEMA_HINT


def _split_choices(expected: str) -> list[str]:
    """`"'low', 'medium' or 'high'"` -> `["low", "medium", "high"]`."""
    return [part for part in expected.replace(" or ", ", ").split(", ") if part]


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as `<field.path>: <what is wrong>; <what to write instead>`."""
    loc, kind = error["loc"], error["type"]
    where = _format_loc(loc)
    field, is_item = _field_name(loc)
    if kind == "relay":  # raised by our validators, already in the manifest's words
        return f"{where}: {error['msg']}"
    if kind == "extra_forbidden":
        return f"{where}: {_unknown_key(loc)}"
    if kind == "missing":
        return f"{where}: required key is missing; add {field}: {_EXAMPLES.get(field, '...')}"
    if kind in {"too_short", "string_too_short"}:
        return f"{where}: is empty; {_hint(error, field, is_item)}"
    got = f"(got {_got(error.get('input'))})"
    if loc and loc[-1] == "[key]":
        name_kind = "service" if loc[0] == "services" else "environment"
        message = NAME_NOT_TEXT.format(kind=name_kind, got=got, example=_NAME_RULES[name_kind][2])
        return f"{where}: {message}"
    if kind in _MAPPING_ERRORS:
        model = _MODELS_BY_SHAPE.get(_shape(loc))
        example = (_MAPPING_EXAMPLES.get(model) if model else None) or _EXAMPLES.get(field, "")
        return f"{where}: {NOT_A_MAPPING_FIELD.format(got=got, example=example)}"
    return f"{where}: {error['msg']} {got}; {_hint(error, field, is_item)}"


# --- checks across fields --------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What the cross-field checks read: from the validated model or, failing that, from
    whatever of the raw document has the right type."""

    app: str
    depends_on: Mapping[str, Sequence[object]]
    ports: Mapping[str, int]
    environments: Mapping[str, Environment]
    services: Mapping[str, Service]


def _facts_from_model(manifest: Manifest) -> _Facts:
    return _Facts(
        app=manifest.app,
        depends_on=manifest.dependency_graph(),
        ports={name: service.port for name, service in manifest.services.items()},
        environments=manifest.environments,
        services=manifest.services,
    )


def _as_dict(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and PORT_MIN <= value <= PORT_MAX


M = TypeVar("M", bound=BaseModel)


def _valid_entries(raw: object, model: type[M]) -> dict[str, M]:
    """The entries of a raw mapping that are valid `model`s on their own."""
    valid: dict[str, M] = {}
    for name, value in _as_dict(raw).items():
        with contextlib.suppress(ValidationError):  # reported by the whole-document validation
            valid[name] = model.model_validate(value)
    return valid


def _facts_from_raw(data: Mapping[str, Any]) -> _Facts:
    services = {name: _as_dict(value) for name, value in _as_dict(data.get("services")).items()}
    depends_on = {
        name: deps if isinstance(deps := service.get("depends_on", []), list) else []
        for name, service in services.items()
    }
    environments = (
        _valid_entries(_with_environment_defaults(data["environments"]), Environment)
        if "environments" in data
        else default_environments()
    )
    app = data.get("app")
    return _Facts(
        app=app if isinstance(app, str) else "app",
        depends_on=depends_on,
        ports={name: s["port"] for name, s in services.items() if _is_port(s.get("port"))},
        environments=environments,
        services=_valid_entries(data.get("services"), Service),
    )


def _unknown_service(name: str, consumer: str, known: Sequence[str]) -> str:
    others = sorted(other for other in known if other != consumer)
    message = UNKNOWN_SERVICE.format(name=name, known=", ".join(others))
    close = difflib.get_close_matches(name, others, n=1)
    return message + (DID_YOU_MEAN.format(suggestion=close[0]) if close else "")


def _dependency_problems(depends_on: Mapping[str, Sequence[object]]) -> list[str]:
    problems: list[str] = []
    for name, deps in depends_on.items():
        seen: set[str] = set()
        for index, dep in enumerate(deps):
            where = f"services.{name}.depends_on[{index}]"
            if not isinstance(dep, str):
                continue  # a type error, reported by pydantic
            if dep == name:
                problems.append(f"{where}: {SELF_DEPENDENCY.format(name=name)}")
            elif dep not in depends_on:
                problems.append(f"{where}: {_unknown_service(dep, name, list(depends_on))}")
            elif dep in seen:
                problems.append(f"{where}: {REPEATED_DEPENDENCY.format(name=dep)}")
            seen.add(dep)
    graph = {
        name: [dep for dep in deps if isinstance(dep, str) and dep != name]
        for name, deps in depends_on.items()
    }
    for cycle in find_cycles(graph):
        problems.append(f"services: {DEPENDENCY_CYCLE.format(cycle=' -> '.join(cycle))}")
    return problems


def _duplicate_port_problems(ports: Mapping[str, int]) -> list[str]:
    problems: list[str] = []
    owner: dict[int, str] = {}
    for name, port in ports.items():
        if port in owner:
            message = DUPLICATE_PORT.format(port=port, other=owner[port])
            problems.append(f"services.{name}.port: {message}")
        else:
            owner[port] = name
    return problems


@dataclass(frozen=True)
class _HostPort:
    """One host port a service takes in a docker environment."""

    env: str
    service: str
    slot: str  # "public port" | "blue slot" | "green slot"
    port: int
    detail: str  # how it is computed, e.g. "8002 + 10000 + 100"

    def describe(self, same_env: bool) -> str:
        where = "" if same_env else f" in {self.env}"
        return f"the {self.slot} of {self.service}{where} ({self.detail})"


def _host_ports(env_name: str, offset: int, ports: Mapping[str, int]) -> list[_HostPort]:
    taken: list[_HostPort] = []
    for service, port in ports.items():
        for slot, extra in (
            ("public port", 0),
            ("blue slot", BLUE_SLOT),
            ("green slot", GREEN_SLOT),
        ):
            detail = f"{port} + {offset}" + (f" + {extra}" if extra else "")
            taken.append(_HostPort(env_name, service, slot, port + offset + extra, detail))
    return taken


def _docker_port_problems(
    environments: Mapping[str, Environment], ports: Mapping[str, int]
) -> list[str]:
    """Host ports that two services (or environments) would share, or that do not exist."""
    unique: dict[str, int] = {}
    for name, port in ports.items():  # a repeated service port is reported on its own
        if port not in unique.values():
            unique[name] = port
    if not unique:
        return []
    gap = max(unique.values()) - min(unique.values()) + GREEN_SLOT + 1
    problems: list[str] = []
    users: dict[int, _HostPort] = {}
    reported: set[frozenset[str]] = set()
    for env_name, env in environments.items():
        if env.platform != "docker" or env.port_offset is None:
            continue
        problems += _port_range_problems(env_name, env.port_offset, unique)
        for taken in _host_ports(env_name, env.port_offset, unique):
            first = users.setdefault(taken.port, taken)
            if first is taken or taken.port > DOCKER_PORT_MAX:
                continue
            same_env = first.env == taken.env
            # One problem per pair of services (same environment: fix a service port) or pair of
            # environments (fix a port_offset), not one per colliding port.
            pair = (
                frozenset({f"services.{first.service}", f"services.{taken.service}"})
                if same_env
                else frozenset({f"environments.{first.env}", f"environments.{taken.env}"})
            )
            if pair in reported:
                continue
            reported.add(pair)
            problems.append(_clash(first, taken, gap))
    return problems


def _clash(first: _HostPort, second: _HostPort, gap: int) -> str:
    if first.env == second.env:
        message = SAME_ENV_PORT_CLASH.format(
            port=second.port,
            env=second.env,
            first=first.describe(same_env=True),
            second=second.describe(same_env=True),
        )
        return f"services.{second.service}.port: {message}"
    message = CROSS_ENV_PORT_CLASH.format(
        port=second.port,
        first=first.describe(same_env=False),
        second=second.describe(same_env=False),
        gap=gap,
    )
    return f"environments.{second.env}.port_offset: {message}"


def _port_range_problems(env_name: str, offset: int, ports: Mapping[str, int]) -> list[str]:
    service, port = max(ports.items(), key=lambda item: item[1])
    highest = port + offset + GREEN_SLOT
    if highest <= DOCKER_PORT_MAX:
        return []
    limit = DOCKER_PORT_MAX - GREEN_SLOT - port
    fix = (
        f"choose a port_offset of at most {limit}"
        if limit >= 0
        else f"choose service ports of at most {DOCKER_PORT_MAX - GREEN_SLOT}"
    )
    message = PORT_TOO_HIGH.format(
        service=service,
        port=highest,
        env=env_name,
        detail=f"its green slot: {port} + {offset} + {GREEN_SLOT}",
        fix=fix,
    )
    return [f"environments.{env_name}.port_offset: {message}"]


def _platform_problems(name: str, env: Environment, app: str) -> list[str]:
    where = f"environments.{name}"
    problems: list[str] = []
    if env.platform == "docker":
        if env.port_offset is None:
            offset = DEFAULT_PORT_OFFSETS.get(name, 10_000)
            problems.append(f"{where}.port_offset: {PORT_OFFSET_MISSING.format(example=offset)}")
        if env.namespace is not None:
            problems.append(f"{where}.namespace: {NAMESPACE_NOT_ON_DOCKER}")
        if env.kubernetes is not None:
            problems.append(f"{where}.kubernetes: {KUBERNETES_NOT_ON_DOCKER}")
    else:
        if env.namespace is None:
            namespace = f"{app}-{name}"
            problems.append(f"{where}.namespace: {NAMESPACE_MISSING.format(example=namespace)}")
        if env.port_offset is not None:
            problems.append(f"{where}.port_offset: {PORT_OFFSET_NOT_ON_KUBERNETES}")
        if env.cluster.cluster is not None and env.cluster.kubeconfig is not None:
            problems.append(f"{where}.kubernetes.cluster: {CLUSTER_TWICE}")
    return problems


def _canary_problems(name: str, steps: Sequence[int]) -> list[str]:
    where = f"environments.{name}.canary_steps"
    if not steps:
        return [f"{where}: {CANARY_EMPTY}"]
    problems: list[str] = []
    for index, step in enumerate(steps):
        if not 1 <= step <= 100:
            problems.append(f"{where}[{index}]: {CANARY_OUT_OF_RANGE.format(value=step)}")
        elif index and step <= steps[index - 1]:
            message = CANARY_NOT_INCREASING.format(value=step, previous=steps[index - 1])
            problems.append(f"{where}[{index}]: {message}")
    if steps[-1] != 100:
        problems.append(f"{where}: {CANARY_END.format(last=steps[-1])}")
    return problems


def _environment_problems(environments: Mapping[str, Environment], app: str) -> list[str]:
    problems: list[str] = []
    for name, env in environments.items():
        problems += _platform_problems(name, env, app)
        problems += _canary_problems(name, env.canary_steps)
    return problems


def _secret_problems(
    services: Mapping[str, Service], environments: Mapping[str, Environment]
) -> list[str]:
    """Per-service secrets must name environments of this manifest."""
    problems: list[str] = []
    known = ", ".join(environments)
    for name, service in services.items():
        for env_name in service.secrets:
            if env_name not in environments:
                message = UNKNOWN_SECRET_ENVIRONMENT.format(name=env_name, known=known)
                problems.append(f"services.{name}.secrets.{env_name}: {message}")
    return problems


def _stage_problems(services: Mapping[str, Service]) -> list[str]:
    """Where a service's stages run: one place, and the settings that go with it."""
    problems: list[str] = []
    for name, service in services.items():
        where = f"services.{name}"
        if service.test_target is not None and service.stage_image is not None:
            problems.append(f"{where}.stage_image: {TARGET_AND_IMAGE}")
        if service.setup is not None and service.stage_image is None:
            problems.append(f"{where}.setup: {SETUP_WITHOUT_IMAGE}")
        if service.runner == "host":
            for field in ("test_target", "stage_image", "setup"):
                if getattr(service, field) is not None:
                    problems.append(f"{where}.{field}: {CONTAINER_ONLY}")
    return problems


def _repository_root(root: Path) -> Path:
    """The checkout that holds the manifest: the nearest directory with `.git`, else its own."""
    for candidate in (root, *root.parents):
        if (candidate / ".git").exists():
            return candidate
    return root


def _escaping_link(base: Path, relative: str, repository: Path) -> str | None:
    """The first symbolic link on the way from `base` to `relative` that leads outside
    `repository`, as "<link> -> <target>", or None (links inside it are fine)."""
    outside = repository.resolve()
    current = base
    for part in PurePosixPath(relative).parts:
        current = current / part
        if current.is_symlink():
            target = current.resolve()
            if target != outside and outside not in target.parents:
                return f"{current.relative_to(repository)} -> {target}"
    return None


def _containment_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    """Every path relay.yaml names must stay inside the repository, at any depth of links:
    a service directory linked elsewhere would be built and tested from outside it."""
    repository = _repository_root(root)
    problems: list[str] = []
    for name, service in services.items():
        directory = service.directory(root)
        named = [("path", root, service.path)]
        named.append(("dockerfile", directory, service.dockerfile))
        if service.sast is not None and service.sast.sarif is not None:
            named.append(("sast.sarif", directory, service.sast.sarif))
        named += [(f"setup_files[{i}]", directory, f) for i, f in enumerate(service.setup_files)]
        for field, base, relative in named:
            link = _escaping_link(base, relative, repository)
            if link is not None:
                link_name, target = link.split(" -> ", 1)
                message = LINK_ESCAPES.format(link=link_name, target=target, root=repository)
                problems.append(f"services.{name}.{field}: {message}")
                break
    return problems


def _target_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    problems: list[str] = []
    for name, service in services.items():
        dockerfile = service.dockerfile_path(root)
        if service.test_target is None or not dockerfile.is_file():
            continue
        stages = stage_names(dockerfile.read_text(encoding="utf-8", errors="replace"))
        if service.test_target.lower() not in stages:
            file = str(PurePosixPath(service.path) / service.dockerfile)
            message = TARGET_MISSING.format(
                target=service.test_target, file=file, stages=", ".join(stages) or "none named"
            )
            problems.append(f"services.{name}.test_target: {message}")
    return problems


def _file_problems(services: Mapping[str, Service], root: Path) -> list[str]:
    problems = _containment_problems(services, root)
    if problems:  # nothing is read through a link that leaves the repository
        return problems
    for name, service in services.items():
        if not service.directory(root).is_dir():
            message = DIRECTORY_MISSING.format(path=service.path, root=root)
            problems.append(f"services.{name}.path: {message}")
        elif not service.dockerfile_path(root).is_file():
            file = str(PurePosixPath(service.path) / service.dockerfile)
            message = DOCKERFILE_MISSING.format(file=file, path=service.path)
            problems.append(f"services.{name}.dockerfile: {message}")
    return problems + _target_problems(services, root)


def _cross_field_problems(facts: _Facts, files_root: Path | None) -> list[str]:
    problems = [
        *_dependency_problems(facts.depends_on),
        *_duplicate_port_problems(facts.ports),
        *_environment_problems(facts.environments, facts.app),
        *_docker_port_problems(facts.environments, facts.ports),
        *_secret_problems(facts.services, facts.environments),
        *_stage_problems(facts.services),
    ]
    if files_root is not None:
        problems += _file_problems(facts.services, files_root)
    return problems


# --- entry points ----------------------------------------------------------------------------


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a plain string"
    return f"a single value ({_got(value)})"


def parse_manifest(
    data: dict[str, Any], path: str | Path, *, check_files: bool = False
) -> Manifest:
    """Validate an already-parsed manifest document.

    Args:
        data: The document, as `yaml.safe_load` returns it.
        path: The manifest file it came from: named in every problem; its directory is the
            manifest's `root`.
        check_files: Also require each service's directory and Dockerfile to exist.

    Returns:
        The manifest, with defaults filled in and `root` and `source` set.

    Raises:
        ManifestError: With every problem found.
    """
    path = Path(path)
    if not isinstance(data, dict):
        raise ManifestError(path, [f"{path}: {NOT_A_MAPPING.format(kind=_yaml_kind(data))}"])
    files_root = path.parent if check_files else None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        problems += _cross_field_problems(_facts_from_raw(data), files_root)
    else:
        problems = _cross_field_problems(_facts_from_model(manifest), files_root)
    if problems:
        raise ManifestError(path, [f"{path}: {problem}" for problem in problems])
    manifest._root = path.absolute().parent
    manifest._source = path.absolute()
    return manifest


def load_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Read and validate a `relay.yaml`.

    Args:
        path: The manifest file.
        check_files: Also require each service's directory and Dockerfile to exist.

    Returns:
        The manifest, with defaults filled in and `root` and `source` set.

    Raises:
        ManifestError: With every problem found, including a missing file or invalid YAML.

    Example:
        >>> manifest = load_manifest("examples/shop/relay.yaml")  # doctest: +SKIP
        >>> manifest.image_repository("orders")  # doctest: +SKIP
        '127.0.0.1:5000/shop/orders'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, [f"{path}: {FILE_MISSING}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ManifestError(path, [f"{path}: {FILE_UNREADABLE.format(reason=reason)}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(path, [f"{path}: {_yaml_problem(exc)}"]) from None
    if data is None:
        raise ManifestError(path, [f"{path}: {FILE_EMPTY}"])
    return parse_manifest(data, path, check_files=check_files)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return YAML_SYNTAX.format(problem=exc, context="")
    mark = exc.problem_mark
    context = ""
    if exc.context and exc.context_mark is not None:
        context = f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    problem = YAML_SYNTAX.format(problem=exc.problem, context=context)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
