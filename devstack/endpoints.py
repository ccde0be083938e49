"""Where each component listens (loopback only; overridable for a second stack on the same
machine), and the environment variables that point clients at them."""

from __future__ import annotations

import os

from devstack.mode import load_mode
from devstack.paths import Paths, stack_paths

REGISTRY_ADDR = os.environ.get("RELAY_REGISTRY_ADDR", "127.0.0.1:5000")


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default if not value else -1  # -1: checked in up()


MOTO_PORT = _env_port("RELAY_MOTO_PORT", 5001)
PREFECT_PORT = _env_port("RELAY_PREFECT_PORT", 4200)
# Not Prometheus' usual 9090: on a Debian machine with systemd, installing the package starts
# Debian's own Prometheus there.
PROMETHEUS_PORT = _env_port("RELAY_PROMETHEUS_PORT", 9095)
# Not PostgreSQL's usual 5432, which a machine's own PostgreSQL may hold.
POSTGRES_PORT = _env_port("RELAY_POSTGRES_PORT", 5433)
MOTO_URL = f"http://127.0.0.1:{MOTO_PORT}"
PROMETHEUS_URL = f"http://127.0.0.1:{PROMETHEUS_PORT}"
PREFECT_API_URL = f"http://127.0.0.1:{PREFECT_PORT}/api"
WORK_POOL = "relay"


def postgres_url(database: str, driver: str = "postgresql+psycopg") -> str:
    """A database of the stack's PostgreSQL (``--postgres``): ``relay`` is Relay's, ``prefect``
    the Prefect server's (driver ``postgresql+asyncpg``). Loopback with trust authentication."""
    return f"{driver}://postgres@127.0.0.1:{POSTGRES_PORT}/{database}"


def environment() -> dict[str, str]:
    """The variables clients need to use the stack (``python -m devstack env`` prints them)."""
    paths = stack_paths()
    return {
        "DOCKER_HOST": paths.docker_host,
        "RELAY_REGISTRY": REGISTRY_ADDR,
        "AWS_ENDPOINT_URL": MOTO_URL,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_API_URL": PREFECT_API_URL,
        "RELAY_PROMETHEUS_URL": PROMETHEUS_URL,
        # The stack's Prefect server keeps its database in SQLite, which answers 503 when two
        # writers' snapshots conflict (SQLITE_BUSY_SNAPSHOT: no busy timeout helps); clients
        # retry those with an exponential back-off, 5 times by default (62 s). Several releases
        # at once on one machine (the test suite's two processes) can outlast that, and did
        # outlast 6 tries (126 s) once in a full run; 8 tries wait up to 510 s in all. The
        # cure is PostgreSQL, what Prefect recommends beyond one machine: no such conflicts
        # (bench/switch_back.py and bench/webhooks.py measure both).
        "PREFECT_CLIENT_MAX_RETRIES": "8",
        # A deployment run's heartbeat every 30 s (Prefect's default: 180): a run whose worker
        # died is marked Crashed after 90 s of silence (deployments/automations.py).
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        "RELAY_HOME": str(paths.home),
        # Where run results are kept: shared, so a release reads what its service pipelines
        # returned on other workers (`relay stack up --workers N`).
        "PREFECT_LOCAL_STORAGE_PATH": str(paths.results),
        # HAProxy routers and kept versions belong to the Docker engine's host: every worker
        # that deploys to this engine shares them, whatever its own RELAY_HOME.
        "RELAY_PLATFORM_HOME": str(paths.home),
        **_mode_environment(paths),
    }


def _mode_environment(paths: Paths) -> dict[str, str]:
    """What `--postgres` and `--workers N` add: Relay's database on PostgreSQL; service
    pipelines spread over the workers (flows/spread.py)."""
    mode = load_mode(paths)
    env = {"RELAY_DATABASE_URL": postgres_url("relay")} if mode.postgres else {}
    if mode.workers > 1:
        env["RELAY_SERVICE_RUNS"] = "deployments"
    return env
