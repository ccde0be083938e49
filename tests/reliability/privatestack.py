"""A second, private Relay stack for fault injection: its own RELAY_HOME, ports and processes.

The shared stack (``~/.cache/relay``) serves every other test running on this machine at the
same time, so no fault may ever touch it. Faults that stop dockerd, the registry or the Prefect
server are injected here instead: ``python -m devstack up`` in a subprocess with a short
``RELAY_HOME`` (containerd's socket path limit) and free loopback ports, stopped with
``python -m devstack down`` on that home, which signals only the PIDs recorded under it.

Flows that must talk to this stack run in subprocesses (``tests/reliability/driver.py``) with
its environment: Prefect reads its API URL at import time, and the test process has already
imported Prefect pointed at the shared server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.paths import Paths
from devstack.supervisor import cmdline, read_pid

ROOT = Path(__file__).resolve().parents[2]
# Variables that point a process at a stack; the private stack sets its own.
STACK_VARIABLES = (
    "DOCKER_HOST",
    "RELAY_REGISTRY",
    "RELAY_REGISTRY_ADDR",
    "AWS_ENDPOINT_URL",
    "PREFECT_API_URL",
    "RELAY_HOME",
    "RELAY_LEDGER",
    "RELAY_PREFECT_PORT",
    "RELAY_MOTO_PORT",
    "RELAY_PROMETHEUS_PORT",
    "RELAY_PROMETHEUS_URL",
    "RELAY_DATABASE_URL",
    "RELAY_PLATFORM_HOME",
    "RELAY_SERVICE_RUNS",
    "PREFECT_LOCAL_STORAGE_PATH",
    "RELAY_POSTGRES_PORT",
)
UP_TIMEOUT = 240.0


def free_port(start: int, stop: int) -> int:
    """A loopback port nobody listens on, picked at random in [start, stop)."""
    for port in sorted(range(start, stop), key=lambda _: uuid.uuid4().int):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{stop - 1}")


def _alive(pid: int) -> bool:
    return cmdline(pid) is not None


@dataclass
class PrivateStack:
    """A stack under ``home`` on its own ports; every process in it was started by this test."""

    home: Path
    prefect_port: int
    moto_port: int
    registry_port: int
    prometheus_port: int = 9299  # RELAY_RELIABILITY_PORTS may name three ports only
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> PrivateStack:
        home = Path(f"/tmp/rr-{uuid.uuid4().hex[:6]}")  # noqa: S108 (short: socket paths)
        return cls(
            home,
            prefect_port=free_port(4300, 4400),
            moto_port=free_port(5300, 5400),
            registry_port=free_port(5400, 5500),
            prometheus_port=free_port(9200, 9300),
        )

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
        env.update(
            RELAY_HOME=str(self.home),
            RELAY_PREFECT_PORT=str(self.prefect_port),
            RELAY_MOTO_PORT=str(self.moto_port),
            RELAY_PROMETHEUS_PORT=str(self.prometheus_port),
            RELAY_REGISTRY_ADDR=self.registry,
            PYTHONPATH=str(ROOT),
            PREFECT_LOGGING_LEVEL="WARNING",
        )
        return env

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    def _stack(self, command: str, timeout: float = UP_TIMEOUT) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "devstack", command],
            env=self.base_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0 and command != "status":
            raise RuntimeError(
                f"devstack {command} (RELAY_HOME={self.home}) failed:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def up(self) -> None:
        """Start what is not running (idempotent, as ``relay stack up``)."""
        self._stack("up")
        env = self.base_env()
        for line in self._stack("env", timeout=30).splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{self.prefect_port}/api"
        self.env = env

    def down(self) -> None:
        """Stop every process recorded under this home (by PID) and delete the home."""
        with contextlib.suppress(Exception):
            self._stack("down", timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)

    def pid(self, component: str) -> int | None:
        return read_pid(Paths(self.home).pidfile(component))

    def stop(self, component: str, grace: float = 25.0) -> float:
        """SIGTERM one component of this stack by its PID (SIGKILL after `grace`); returns the
        seconds it took. Only ever a process under this private home."""
        pid = self.pid(component)
        assert pid is not None and _alive(pid), f"{component} of {self.home} is not running"
        argv = " ".join(cmdline(pid) or [])
        assert (
            str(self.home) in argv
            or str(self.registry_port) in argv
            or (str(self.prefect_port) in argv)
        ), f"pid {pid} is not this private stack's {component}: {argv!r}"
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while _alive(pid):
            if time.monotonic() - started > grace:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        return time.monotonic() - started

    def driver(self, *args: str, timeout: float = 240.0) -> dict[str, Any]:
        """Run ``tests/reliability/driver.py`` against this stack; its JSON answer."""
        return run_driver(self.env, *args, timeout=timeout)

    def spawn_driver(self, *args: str) -> subprocess.Popen[str]:
        return spawn_driver(self.env, *args)


def spawn_driver(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The driver in its own session (so it and its children can be killed as a group)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "reliability" / "driver.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def answer(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait (bounded) for a driver and parse the JSON on its last output line."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"driver timed out after {timeout:.0f} s:\n{err[-3000:]}") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"driver exited {proc.returncode} without an answer:\n{err[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = err
    return result


def run_driver(env: dict[str, str], *args: str, timeout: float = 240.0) -> dict[str, Any]:
    return answer(spawn_driver(env, *args), timeout)
