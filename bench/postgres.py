"""A Prefect server on PostgreSQL, for benchmarks that compare it with the stack's SQLite one.

A throwaway cluster (`devstack.postgres`) and a Prefect server on it, both under a temporary
directory, both stopped at the end and the directory removed. Nothing of the stack is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack import postgres
from devstack.postgres import free_port


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    log: Path  # the server's output, for its database errors
    cluster: postgres.Cluster  # its PostgreSQL, where a benchmark may make databases of its own


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this module started (its own session), politely first."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def prefect_on_postgres() -> Iterator[PrefectServer]:
    """A PostgreSQL cluster and a Prefect server on it, both ours, for the `with` block."""
    with postgres.cluster() as pg:
        pg.create_database("prefect")
        server: subprocess.Popen[bytes] | None = None
        try:
            port = free_port(4480)
            env = {
                **os.environ,
                "PREFECT_HOME": str(pg.work / "prefect"),
                "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "postgresql+asyncpg"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            env.pop("PREFECT_API_URL", None)
            log_path = pg.work / "prefect.log"
            with log_path.open("wb") as log:
                server = subprocess.Popen(
                    [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            wait_http(f"http://127.0.0.1:{port}/api/health", 180)
            yield PrefectServer(f"http://127.0.0.1:{port}/api", log_path, pg)
        finally:
            if server is not None:
                stop(server)


# Set in the child `rerun_on_postgres` starts, to the path of its Prefect server's log.
ON_POSTGRES = "RELAY_BENCH_PREFECT_LOG"


def rerun_on_postgres(script: str) -> int:
    """`script` again, with this process's arguments, in a child whose Prefect is a
    PostgreSQL-backed server: Prefect binds its API URL at import, so the server must exist
    before the child imports it. The child finds `ON_POSTGRES` set (to the server's log)."""
    with prefect_on_postgres() as server:
        env = {**os.environ, "PREFECT_API_URL": server.api_url, ON_POSTGRES: str(server.log)}
        return subprocess.run([sys.executable, script, *sys.argv[1:]], env=env).returncode
