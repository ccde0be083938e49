"""The layout under ``RELAY_HOME``: where each component keeps its socket, data, log and pid.

``RELAY_HOME`` itself is ``relay.settings.relay_home()``, the one rule every part of Relay
uses, so the stack, the ledger and HAProxy's state always land in the same directory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from relay.settings import relay_home

SOCKET_PATH_LIMIT = 100  # bytes; the kernel's limit is 107 plus NUL


def stack_home() -> Path:
    """Where the stack keeps its state: ``relay.settings.relay_home()`` (``$RELAY_HOME``,
    default ``~/.cache/relay``)."""
    return relay_home()


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def docker_dir(self) -> Path:
        return self.home / "docker"

    @property
    def data_root(self) -> Path:
        return self.docker_dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.docker_dir / "exec"

    @property
    def docker_sock(self) -> Path:
        return self.home / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_sock}"

    @property
    def registry_config(self) -> Path:
        return self.home / "registry" / "config.yml"

    @property
    def registry_data(self) -> Path:
        return self.home / "registry" / "data"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def prometheus_config(self) -> Path:
        return self.home / "prometheus" / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.home / "prometheus" / "data"

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    @property
    def postgres_dir(self) -> Path:
        """PostgreSQL's data and socket (``--postgres``): outside ``RELAY_HOME``, which is often
        under /root where the ``postgres`` user may not enter; one per ``RELAY_HOME``, kept."""
        key = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/var/lib/relay-postgres") / key

    @property
    def results(self) -> Path:
        """Prefect's result storage, shared by every worker of the stack and its clients: a
        release reads what the service pipelines it started on other workers returned."""
        return self.home / "results"

    def worker_home(self, number: int) -> Path:
        """The ``RELAY_HOME`` of worker `number`: the first uses the stack's own, the others
        one each (checkouts, caches, run logs), standing for separate machines."""
        return self.home if number == 1 else self.home / "workers" / str(number)

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_length(self) -> None:
        longest = self.exec_root / "containerd" / "containerd.sock.ttrpc"
        if len(str(longest).encode()) >= SOCKET_PATH_LIMIT:
            raise StackError(
                f"RELAY_HOME={self.home} is too long ({len(str(self.home))} chars): containerd's "
                f"socket {longest} would exceed the unix socket path limit. "
                "Set RELAY_HOME to a shorter path, e.g. export RELAY_HOME=/tmp/relay"
            )

    def make_dirs(self) -> None:
        for d in (self.run, self.logs, self.data_root, self.exec_root, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.registry_data.mkdir(parents=True, exist_ok=True)
        self.prefect_home.mkdir(parents=True, exist_ok=True)


def stack_paths() -> Paths:
    """The layout under the current ``RELAY_HOME`` (read on every call)."""
    return Paths(stack_home())
