"""The messages of relay.yaml's problems, each "<what is wrong>; <what to write instead>".

A problem is reported as `<file>: <field.path>: <message>`. The field types (fields.py), the
rewriting of pydantic's errors (errors.py), the checks across fields (checks.py, ports.py) and
the loading of the file (load.py) all word their problems from here.
"""

from __future__ import annotations

from relay.manifest.limits import BLUE_SLOT, DOCKER_PORT_MAX, GREEN_SLOT

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
URL_INVALID = "{value!r} is not an http(s) URL; write one such as 'https://example.com:9090/path'"
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
FILE_MISSING = "file not found; create it (see docs/relay.yaml for an example) or fix the path"
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
SCHEMA_HINT = "see the example in docs/relay.yaml"
