"""The defaults and limits of relay.yaml's fields: the numbers and names that the field types,
the models, the messages and the checks share (this module imports nothing)."""

from __future__ import annotations

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
SOAK_MAX = 30 * 86_400  # a release may be asked to soak for up to 30 days
REPLICAS_MIN = 1
REPLICAS_MAX = 100
PROGRESS_DEADLINE_MIN = 5
PROGRESS_DEADLINE_MAX = 3600
# On docker a new container starts next to the old one on host networking, so the two cannot
# share a port: each service has a public port (the router's) and two slot ports above it
# (see relay.manifest.ports).
BLUE_SLOT = 100
GREEN_SLOT = 200
