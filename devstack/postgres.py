"""Throwaway PostgreSQL clusters: Debian's `postgresql` (installed by scripts/install-deps).

A cluster is `initdb` + `pg_ctl` run as the `postgres` user, with trust authentication, listening
on 127.0.0.1 only, on a free port, its data in a temporary directory (not under /root, which the
`postgres` user cannot enter). It is stopped by `pg_ctl` and its directory removed at the end.
Tests use one per session for Relay's database on PostgreSQL; benchmarks put a Prefect server on
one (bench/postgres.py).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


class PostgresMissing(RuntimeError):
    """Debian's postgresql package is not installed."""


@dataclass(frozen=True)
class Cluster:
    port: int
    work: Path  # data, socket and log

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL of `database` (created by `create_database`)."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create `name` and return its URL (psycopg driver)."""
        command = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), name]
        subprocess.run([*AS_POSTGRES, *command], check=True, capture_output=True, timeout=60)
        return self.url(name)


def free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {start}")


def _random_free_port(start: int, span: int = 2000) -> int:
    """A free port picked at random: clusters started at once (test processes) rarely pick
    the same, and `cluster` tries another if they do."""
    return free_port(start + random.randrange(span))  # noqa: S311 (not a secret)


@contextmanager
def cluster(start_port: int = 55432, attempts: int = 5) -> Iterator[Cluster]:
    """A PostgreSQL cluster of our own for the `with` block."""
    if not (PG_BIN / "initdb").exists():
        raise PostgresMissing(
            f"PostgreSQL is not installed ({PG_BIN / 'initdb'} is missing): run "
            "scripts/install-deps (Debian's postgresql package)"
        )
    work = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    shutil.chown(work, "postgres", "postgres")
    data = work / "data"
    started = False
    try:
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        subprocess.run([*AS_POSTGRES, *initdb], check=True, capture_output=True, timeout=120)
        for attempt in range(attempts):
            # A port found free can be taken before the server binds it: try another one.
            port = _random_free_port(start_port)
            opts = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c max_connections=300"
            start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                     str(work / "pg.log"), "-w", "start"]  # fmt: skip
            done = subprocess.run([*AS_POSTGRES, *start], capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            if done.returncode == 0:
                started = True
                break
            if attempt == attempts - 1:
                log = (work / "pg.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{log}")
        yield Cluster(port, work)
    finally:
        if started:
            subprocess.run([*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                            "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
