"""Where Relay keeps its state on a worker, read from the environment.

`RELAY_HOME` holds the local stack (engine data, registry, Prefect database), HAProxy
configurations and checked-out commits; it defaults to the user's cache directory so what is
built once per machine stays built.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def relay_home() -> Path:
    """``$RELAY_HOME``, default ``$XDG_CACHE_HOME/relay`` (``~/.cache/relay``): the one rule for
    every part of Relay, the local stack (``devstack``) included.

    An empty variable counts as unset, ``~`` is expanded and a relative path is made absolute,
    so that ``RELAY_HOME=~/r`` puts the ledger, HAProxy's state and the stack in one place.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "relay"
    return Path(os.environ.get("RELAY_HOME") or default).expanduser().absolute()


def workdir(repository: str, commit: str) -> Path:
    """A commit's private checkout: one per commit, so concurrent pipelines never share one."""
    name = Path(repository.rstrip("/")).name.removesuffix(".git") or "repo"
    key = hashlib.sha256(repository.encode()).hexdigest()[:8]
    return relay_home() / "work" / f"{name}-{key}" / commit[:12]


def ledger_path() -> Path:
    """The embedded ledger's SQLite file: ``$RELAY_LEDGER``, default ``$RELAY_HOME/ledger.db``."""
    return Path(os.environ.get("RELAY_LEDGER", relay_home() / "ledger.db"))


def relay_database() -> str | Path:
    """Relay's database (the ledger, the webhook deliveries): ``$RELAY_DATABASE_URL`` when set,
    the database every worker and receiver of a fleet shares (PostgreSQL,
    ``postgresql+psycopg://relay@db.internal:5432/relay``); else the SQLite file of
    `ledger_path`, which only processes of one machine may share."""
    return os.environ.get("RELAY_DATABASE_URL", "").strip() or ledger_path()


def platform_home() -> Path:
    """Where the state of the Docker platform lives (HAProxy routers, kept previous versions):
    ``$RELAY_PLATFORM_HOME``, default `relay_home`. It belongs to the engine's host, not to a
    worker: every worker that deploys to one engine must see the same, so several workers with
    their own ``RELAY_HOME`` on one machine share it (the local stack's workers do)."""
    value = os.environ.get("RELAY_PLATFORM_HOME", "").strip()
    return Path(value).expanduser().absolute() if value else relay_home()


def router_image() -> str | None:
    """The image HAProxy routers run from as containers on the Docker engine
    (``$RELAY_ROUTER_IMAGE``, such as ``haproxy:2.6``), or None: routers are processes on the
    worker's host. Workers that run in containers (a `docker`, `kubernetes` or `ecs` work
    pool) need it, since a router started inside a flow run's container would end with it."""
    return os.environ.get("RELAY_ROUTER_IMAGE", "").strip() or None


def prometheus_targets(home: Path | None = None) -> Path:
    """Where each HAProxy router writes its Prometheus scrape target (one JSON file per
    application environment, Prometheus' `file_sd_configs` format): a Prometheus that reads
    ``<this>/*.json`` scrapes every router Relay runs on this machine, labelled by app and
    environment (the local stack's does)."""
    return (home or relay_home()) / "prometheus" / "targets"


def prometheus_url() -> str | None:
    """The Prometheus a canary's PromQL queries go to when `analysis.prometheus.address` does
    not say: ``$RELAY_PROMETHEUS_URL`` (the local stack sets it to its own)."""
    return os.environ.get("RELAY_PROMETHEUS_URL", "").strip().rstrip("/") or None


def aws_logs_target() -> tuple[str, str | None]:
    """(region, endpoint) of CloudWatch Logs as the standard AWS settings name them:
    `AWS_REGION` or `AWS_DEFAULT_REGION` (default us-east-1), and `AWS_ENDPOINT_URL_LOGS` or
    `AWS_ENDPOINT_URL` when set (a local stand-in such as moto). Docker's awslogs driver takes
    them as options, since it runs in the engine, not in Relay."""
    region = (
        os.environ.get("AWS_REGION", "").strip()
        or os.environ.get("AWS_DEFAULT_REGION", "").strip()
        or "us-east-1"
    )
    endpoint = (
        os.environ.get("AWS_ENDPOINT_URL_LOGS", "").strip()
        or os.environ.get("AWS_ENDPOINT_URL", "").strip()
        or None
    )
    return region, endpoint
