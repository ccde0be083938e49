"""Relay's local stack: the real services Relay talks to, on loopback only. Development
infrastructure, not part of Relay: ``relay/`` never imports it.

    python -m devstack up | down | status | env       (or ``relay stack ...``)

Why each piece exists (``devstack.components`` defines the processes)
---------------------------------------------------------------------
dockerd     A private Docker engine that builds and runs the service images, with no bridge
            and no NAT (this machine may only reach 127.0.0.0/8; containers use the host
            network). Its data-root is kept, so whatever was built once stays cached.
base-image  ``python:3.11-slim`` cannot be pulled (no image registry can be reached), so a
            stand-in is built from the host's Debian Python (``devstack.base_image``,
            ``devstack.rootfs``).
registry    Debian's ``docker-registry`` on 127.0.0.1:5000 stands in for ECR.
moto        ``moto_server`` on 127.0.0.1:5001 stands in for AWS (``AWS_ENDPOINT_URL``).
prefect     A Prefect server on 127.0.0.1:4200 (SQLite) and the process work pool ``relay``.
worker      Prefect workers of that pool, with the stack's environment (``--workers N``).
postgres    With ``--postgres``: PostgreSQL for the Prefect server and Relay's database.

The modules
-----------
paths       the layout under ``RELAY_HOME`` (``relay.settings.relay_home()``)
endpoints   addresses and ports, and ``environment()``: the variables that point clients here
supervisor  processes by PID: pidfiles, start and wait, stop, the command-line guard
components  the table of processes above (how each starts, is recognised, answers)
docker_api  raw Engine API calls over the stack's socket, and the docker SDK client
rootfs      the base image's root filesystem as a tar, from this machine's files
base_image  that image in the engine: import, tags, revision label, self-test
cleanup     what ``down`` clears besides processes: managed containers, containerd, mounts
lifecycle   ``up``, ``status``, ``down``
model       ``ComponentStatus``, ``StackStatus`` and the one-line-per-component format
demo        the demo's application repository (``examples/shop`` as a git repository)

Layout under ``RELAY_HOME`` (default ``~/.cache/relay``; keep it short, because containerd's
socket lives under it and a unix socket path has a limit of about 107 bytes)::

    docker.sock             the engine's API socket (DOCKER_HOST)
    docker/data, docker/exec   dockerd --data-root (kept: the per-machine cache) and --exec-root
    registry/config.yml, registry/data    registry config and blobs (kept)
    prefect/                PREFECT_HOME of the server (SQLite database, kept; a server that
                            `make test` starts begins empty, the old one kept as .previous)
    logs/<name>.log         stdout and stderr of each process
    run/<name>.pid          PID of each process. ``down`` stops every process with a pidfile
                            here, other code's too (for example ``haproxy-<service>.pid``), but
                            only if the process's command line still looks like the one
                            started (a guard against recycled PIDs). A pidfile that is not one
                            of the stack's own is matched by its prefix: ``haproxy-x.pid`` must
                            name a ``haproxy`` program.

``up`` is idempotent: it starts only what is not running. ``down`` never deletes data.
"""

from __future__ import annotations

from devstack.base_image import BASE_IMAGE, BASE_IMAGE_RELAY
from devstack.docker_api import MANAGED_LABEL
from devstack.endpoints import POSTGRES_PORT, environment
from devstack.errors import StackError
from devstack.lifecycle import down, status, up
from devstack.mode import StackMode, load_mode
from devstack.model import ComponentStatus, StackStatus, progress_line
from devstack.paths import stack_home, stack_paths


def mode_from(postgres: bool, sqlite: bool, workers: int | None) -> StackMode | None:
    """The mode `up` is asked for: what the options change of the last one; None: no change."""
    if not (postgres or sqlite or workers is not None):
        return None
    last = load_mode(stack_paths())
    return StackMode(
        postgres=True if postgres else False if sqlite else last.postgres,
        workers=workers if workers is not None else last.workers,
    )


__all__ = [
    "POSTGRES_PORT",
    "BASE_IMAGE",
    "BASE_IMAGE_RELAY",
    "MANAGED_LABEL",
    "ComponentStatus",
    "StackError",
    "StackMode",
    "StackStatus",
    "down",
    "environment",
    "load_mode",
    "mode_from",
    "progress_line",
    "stack_home",
    "stack_paths",
    "status",
    "up",
]
