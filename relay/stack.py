"""Relay's local stack: the real services Relay talks to, on loopback only.

    python -m relay.stack up | down | status | env

Why each piece exists
---------------------
dockerd     A private Docker engine (Debian ``docker.io``) that builds and runs the service
            images. It runs with ``--bridge=none --iptables=false --ip-forward=false
            --ip-masq=false`` because this machine may only reach 127.0.0.0/8: there is no
            docker0 bridge and no NAT, and containers use ``--network host``. Its data-root is
            kept across ``down``/``up``, so whatever was built once stays cached on the machine.
base-image  No image registry can be reached, so ``python:3.11-slim`` cannot be pulled. Relay
            builds a stand-in from the host's Debian ``/usr/bin/python3.11``: the stdlib, the
            libraries ``ldd`` names, busybox-static for ``/bin/sh``, and pip copied from the
            venv Relay runs in. It is loaded with ``docker import`` and tagged both
            ``python:3.11-slim`` and ``relay/python-base:3.11``, so application Dockerfiles
            (``ARG BASE_IMAGE=python:3.11-slim`` / ``FROM ${BASE_IMAGE}``) build unchanged with
            pull disabled.
registry    Debian's ``docker-registry`` (CNCF distribution) on 127.0.0.1:5000 stands in for ECR.
            Images are pushed to it, and every environment deploys by the digest it returns.
moto        ``moto_server`` on 127.0.0.1:5001 stands in for AWS (Secrets Manager, CloudWatch,
            Logs, the ECR API, STS). boto3 reaches it through ``AWS_ENDPOINT_URL`` with no code
            changes.
prefect     A Prefect server on 127.0.0.1:4200 (SQLite under ``$RELAY_HOME/prefect``) and the
            process work pool ``relay``. Flows, deployments and workers then share one
            long-lived API instead of an ephemeral server per process. This module starts it
            as a subprocess; ``relay/`` never imports Prefect.

Layout under ``RELAY_HOME`` (default ``~/.cache/relay``; keep it short, because containerd's
socket lives under it and a unix socket path has a limit of about 107 bytes)::

    docker.sock             the engine's API socket (DOCKER_HOST)
    docker/data, docker/exec   dockerd --data-root (kept: the per-machine cache) and --exec-root
    registry/config.yml, registry/data    registry config and blobs (kept)
    prefect/                PREFECT_HOME of the server (SQLite database, kept)
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

import contextlib
import fcntl
import http.client
import importlib.metadata
import importlib.util
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_IMAGE",
    "BASE_IMAGE_RELAY",
    "MANAGED_LABEL",
    "ComponentStatus",
    "StackError",
    "StackStatus",
    "down",
    "environment",
    "stack_home",
    "status",
    "up",
]

# --- addresses (loopback only; overridable for a second stack on the same machine) ----------
REGISTRY_ADDR = os.environ.get("RELAY_REGISTRY_ADDR", "127.0.0.1:5000")


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default if not value else -1  # -1: checked in up()


MOTO_PORT = _env_port("RELAY_MOTO_PORT", 5001)
PREFECT_PORT = _env_port("RELAY_PREFECT_PORT", 4200)
MOTO_URL = f"http://127.0.0.1:{MOTO_PORT}"
PREFECT_API_URL = f"http://127.0.0.1:{PREFECT_PORT}/api"
WORK_POOL = "relay"

# --- the base image ---------------------------------------------------------------------------
BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_RELAY = "relay/python-base:3.11"
BASE_IMAGE_LABEL = "relay.base-image"
# Bumped whenever the base image's content changes, so that a machine that built an older one
# builds it again: 2 added libgcc_s (glibc loads it to end threads; without it a Python
# process that stops a server thread on SIGTERM aborts).
BASE_IMAGE_REVISION = "2"
REVISION_LABEL = "relay.base-revision"
# Libraries glibc opens itself at run time, which `ldd` does not name.
_LOADED_AT_RUN_TIME = ("libgcc_s.so.1",)
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"
HOST_PYTHON = Path("/usr/bin/python3.11")
HOST_STDLIB = Path("/usr/lib/python3.11")
BUSYBOX = Path("/bin/busybox")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Not copied from the stdlib: tests and GUI/tooling (size); ensurepip (pip is copied instead);
# config-* (a 25 MB static libpython); EXTERNALLY-MANAGED (Debian's PEP 668 marker would make
# `RUN pip install ...` in application Dockerfiles fail).
STDLIB_EXCLUDE = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "dist-packages",
        "site-packages",
        "EXTERNALLY-MANAGED",
    }
)

# Containers and images that `down` may remove carry this label (other Relay code sets it).
MANAGED_LABEL = "relay.managed"

_SOCKET_PATH_LIMIT = 100  # bytes; the kernel's limit is 107 plus NUL
_NAME_WIDTH = 12
_DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")


class StackError(RuntimeError):
    """A stack component could not be started or stopped; the message says what to do."""


# --- paths ------------------------------------------------------------------------------------


def stack_home() -> Path:
    """Where the stack keeps its state: ``$RELAY_HOME``, default ``~/.cache/relay``
    (``$XDG_CACHE_HOME/relay`` when that is set, like ``relay.settings.relay_home``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "relay"
    return Path(os.environ.get("RELAY_HOME") or default).expanduser().absolute()


@dataclass(frozen=True)
class _Paths:
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
    def tmp(self) -> Path:
        return self.home / "tmp"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_length(self) -> None:
        longest = self.exec_root / "containerd" / "containerd.sock.ttrpc"
        if len(str(longest).encode()) >= _SOCKET_PATH_LIMIT:
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


def _paths() -> _Paths:
    return _Paths(stack_home())


# --- status model -----------------------------------------------------------------------------


@dataclass
class ComponentStatus:
    """One component of the stack. ``running``: its process is alive (for ``base-image``: the
    image exists); ``ready``: its endpoint answers."""

    name: str
    running: bool
    pid: int | None
    address: str
    ready: bool = False
    detail: str = ""


@dataclass
class StackStatus:
    home: Path
    components: list[ComponentStatus] = field(default_factory=list)

    @property
    def all_running(self) -> bool:
        return all(c.running and c.ready for c in self.components)

    @property
    def any_running(self) -> bool:
        return any(c.running for c in self.components if c.pid is not None)

    def __getitem__(self, name: str) -> ComponentStatus:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def pids(self) -> dict[str, int | None]:
        return {c.name: c.pid for c in self.components}

    def __str__(self) -> str:
        lines = [f"RELAY_HOME={self.home}"]
        for c in self.components:
            state = "ready" if c.running and c.ready else "running" if c.running else "stopped"
            pid = f"pid {c.pid}" if c.pid else ""
            extra = f"  {c.detail}" if c.detail else ""
            lines.append(f"{c.name:<{_NAME_WIDTH}} {state:<8} {pid:<10} {c.address}{extra}")
        return "\n".join(lines)


# --- small helpers: processes, HTTP, the docker socket ---------------------------------------


def _cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None if there is none (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # exited; its parent has not reaped it yet
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _programs(argv: list[str]) -> set[str]:
    """Names a command line runs: ``python -m prefect`` → {python, prefect}; a script run by an
    interpreter (``python3 /venv/bin/moto_server``) → {python3, moto_server}."""
    if not argv:
        return set()
    first = Path(argv[0]).name
    names = {first}
    if first.startswith(("python", "sh", "bash")):
        if "-m" in argv[1:-1]:
            names.add(argv[argv.index("-m") + 1])
        elif len(argv) > 1 and not argv[1].startswith("-"):
            names.add(Path(argv[1]).name)
    return names


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join("    " + line for line in text)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(url: str, *, method: str = "GET", timeout: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body) of a loopback HTTP request, ignoring any proxy settings; None if no answer."""
    try:
        with _NO_PROXY.open(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, http.client.HTTPException):
        return None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._unix_path)
        self.sock = sock


def _docker_api(
    paths: _Paths, path: str, *, method: str = "GET", timeout: float = 2.0
) -> tuple[int, bytes] | None:
    """A raw Docker Engine API call over the stack's socket (fast; no SDK import)."""
    if not paths.docker_sock.exists():
        return None
    conn = _UnixHTTPConnection(paths.docker_sock, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def _docker_ready(paths: _Paths) -> bool:
    r = _docker_api(paths, "/_ping", timeout=1.0)
    return r is not None and r[0] == 200


def _image_inspect(paths: _Paths, ref: str) -> dict[str, Any] | None:
    r = _docker_api(paths, f"/images/{ref}/json")
    if r is None or r[0] != 200:
        return None
    data: dict[str, Any] = json.loads(r[1])
    return data


def _docker_client(paths: _Paths, timeout: int = 300) -> Any:
    try:
        import docker
    except ImportError as e:
        raise StackError(
            "the docker SDK is not installed in this Python "
            f"({sys.executable}): pip install docker (it is one of Relay's dependencies)"
        ) from e
    return docker.DockerClient(base_url=paths.docker_host, timeout=timeout)


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Serialise concurrent `up`/`down` calls on one RELAY_HOME."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.home / "stack.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the process components -------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    """A long-running process of the stack. Only this table knows every one of them."""

    name: str
    address: Callable[[_Paths], str]
    argv: Callable[[_Paths], list[str]]
    is_ours: Callable[[list[str], _Paths], bool]
    ready: Callable[[_Paths], bool]
    timeout: float
    port: tuple[str, int] | None = None  # (host, port) that must be free before starting
    port_env: str = ""
    env: Callable[[_Paths], dict[str, str]] | None = None
    prepare: Callable[[_Paths], None] | None = None
    writes_own_pidfile: bool = False


def _require(program: str, hint: str) -> str:
    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise StackError(f"{program} not found: {hint}")
    return path


def _dockerd_argv(p: _Paths) -> list[str]:
    dockerd = _require("dockerd", "run scripts/install-deps (needs Debian's docker.io)")
    return [
        dockerd,
        *_DOCKERD_FLAGS,
        "--data-root",
        str(p.data_root),
        "--exec-root",
        str(p.exec_root),
        "--pidfile",
        str(p.pidfile("dockerd")),
        "-H",
        p.docker_host,
    ]


def _dockerd_env(p: _Paths) -> dict[str, str]:
    env = dict(os.environ)
    # dockerd finds containerd, runc and docker-init on PATH.
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return env


def _dockerd_prepare(p: _Paths) -> None:
    p.check_length()
    # dockerd refuses to start next to a pidfile it cannot prove stale; ours was checked.
    p.pidfile("dockerd").unlink(missing_ok=True)


def _registry_host_port(strict: bool = True) -> tuple[str, int]:
    host, _, port = REGISTRY_ADDR.rpartition(":")
    if not strict:
        return host, int(port) if port.isdigit() else 0
    if not host.startswith("127.") or not port.isdigit():
        raise StackError(
            f"RELAY_REGISTRY_ADDR={REGISTRY_ADDR!r} is not a loopback host:port; "
            "use e.g. 127.0.0.1:5000 (only 127.0.0.0/8 may be used on this machine)"
        )
    return host, int(port)


def _registry_prepare(p: _Paths) -> None:
    _require("docker-registry", "run scripts/install-deps (needs Debian's docker-registry)")
    _registry_host_port()
    p.registry_config.parent.mkdir(parents=True, exist_ok=True)
    p.registry_config.write_text(
        "# written by relay.stack: Relay's local stand-in for ECR\n"
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {p.registry_data}\n"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        "health:\n  storagedriver:\n    enabled: false\n"
        f"http:\n  addr: {REGISTRY_ADDR}\n"
    )


def _moto_server() -> Path:
    return Path(sys.executable).parent / "moto_server"


def _moto_prepare(p: _Paths) -> None:
    if not _moto_server().exists():
        raise StackError(
            f"moto_server not found next to {sys.executable}: "
            "pip install 'moto[server]' into the Python that runs Relay"
        )


def _prefect_env(p: _Paths) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(p.prefect_home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _prefect_prepare(p: _Paths) -> None:
    if importlib.util.find_spec("prefect") is None:  # locate only; relay never imports prefect
        raise StackError(
            f"prefect is not installed in {sys.executable}: pip install prefect==3.9.1"
        )


def _ok(url: str, expect: int = 200) -> Callable[[_Paths], bool]:
    def check(_: _Paths) -> bool:
        r = _http(url, timeout=2.0)
        return r is not None and r[0] == expect

    return check


SERVICES: tuple[_Service, ...] = (
    _Service(
        name="dockerd",
        address=lambda p: p.docker_host,
        argv=_dockerd_argv,
        is_ours=lambda a, p: "dockerd" in _programs(a) and str(p.exec_root) in a,
        ready=_docker_ready,
        timeout=20.0,
        env=_dockerd_env,
        prepare=_dockerd_prepare,
        writes_own_pidfile=True,
    ),
    _Service(
        name="registry",
        address=lambda p: REGISTRY_ADDR,
        argv=lambda p: ["docker-registry", "serve", str(p.registry_config)],
        is_ours=lambda a, p: "docker-registry" in _programs(a) and str(p.registry_config) in a,
        ready=lambda p: _ok(f"http://{REGISTRY_ADDR}/v2/")(p),
        timeout=20.0,
        port=_registry_host_port(strict=False),
        port_env="RELAY_REGISTRY_ADDR",
        prepare=_registry_prepare,
    ),
    _Service(
        name="moto",
        address=lambda p: MOTO_URL,
        argv=lambda p: [str(_moto_server()), "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        is_ours=lambda a, p: "moto_server" in _programs(a) and str(MOTO_PORT) in a,
        ready=_ok(f"{MOTO_URL}/moto-api/"),
        timeout=30.0,
        port=("127.0.0.1", MOTO_PORT),
        port_env="RELAY_MOTO_PORT",
        prepare=_moto_prepare,
    ),
    _Service(
        name="prefect",
        address=lambda p: PREFECT_API_URL,
        argv=lambda p: [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(PREFECT_PORT),
        ],
        is_ours=lambda a, p: (
            "prefect" in _programs(a) and "server" in a and "start" in a and str(PREFECT_PORT) in a
        ),
        ready=_ok(f"{PREFECT_API_URL}/health"),
        timeout=90.0,  # the first start runs the database migrations
        port=("127.0.0.1", PREFECT_PORT),
        port_env="RELAY_PREFECT_PORT",
        env=_prefect_env,
        prepare=_prefect_prepare,
    ),
)


def _worker_started(p: _Paths) -> bool:
    """The worker logs "... started!" once it polls its work pool (since its latest start)."""
    try:
        text = p.log("worker").read_text(errors="replace")
    except OSError:
        return False
    return "started!" in text.rsplit("=== relay.stack", 1)[-1]


def _worker_env(p: _Paths) -> dict[str, str]:
    # The worker runs flows that use the stack: it gets the stack's environment, and polls
    # every 2 s instead of 10 so local runs start promptly.
    return {**os.environ, **environment(), "PREFECT_WORKER_QUERY_SECONDS": "2"}


# The worker starts after the others: it needs the Prefect server and the work pool.
WORKER = _Service(
    name="worker",
    address=lambda p: f"work pool '{WORK_POOL}'",
    argv=lambda p: [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        WORK_POOL,
        "--name",
        f"relay-{os.uname().nodename}",
    ],
    is_ours=lambda a, p: "prefect" in _programs(a) and "worker" in a and WORK_POOL in a,
    ready=_worker_started,
    timeout=60.0,
    env=_worker_env,
)

_SERVICE_BY_NAME = {s.name: s for s in (*SERVICES, WORKER)}


def _pidfile_matches(name: str, argv: list[str], paths: _Paths) -> bool:
    """Does this command line look like what was started under `name`? (recycled-PID guard)"""
    service = _SERVICE_BY_NAME.get(name)
    if service is not None:
        return service.is_ours(argv, paths)
    # Other Relay code records its processes as `<program>-<what>.pid` (e.g. haproxy-api.pid).
    return name.split("-", 1)[0] in _programs(argv)


def _our_pid(name: str, paths: _Paths) -> int | None:
    pid = _read_pid(paths.pidfile(name))
    if pid is None:
        return None
    argv = _cmdline(pid)
    if argv is None or not _pidfile_matches(name, argv, paths):
        return None
    return pid


@dataclass
class _Pending:
    service: _Service
    started: float
    proc: subprocess.Popen[bytes] | None  # None: was already running


def _start(service: _Service, paths: _Paths) -> _Pending:
    """Start `service` unless it runs already; does not wait for it."""
    t0 = time.monotonic()
    if _our_pid(service.name, paths) is not None:
        return _Pending(service, t0, None)
    if service.prepare is not None:
        service.prepare(paths)
    if service.port is not None and not 0 < service.port[1] < 65536:
        raise StackError(
            f"{service.name}: {service.port_env}={os.environ.get(service.port_env)!r} is not a "
            "valid port; use a free port number between 1 and 65535"
        )
    if service.port is not None and _port_in_use(*service.port):
        host, port = service.port
        raise StackError(
            f"{service.name}: {host}:{port} is already in use by a process Relay did not start "
            f"(no live {paths.pidfile(service.name)}). Stop that process, or set "
            f"{service.port_env} to another port"
        )
    argv = service.argv(paths)
    log = paths.log(service.name)
    with open(log, "ab") as out:
        out.write(f"\n=== relay.stack {time.strftime('%F %T')}: {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths.home,
                env=service.env(paths) if service.env else None,
                start_new_session=True,
            )
        except OSError as e:
            raise StackError(f"{service.name}: cannot start {argv[0]}: {e}") from e
    if not service.writes_own_pidfile:
        paths.pidfile(service.name).write_text(f"{proc.pid}\n")
    return _Pending(service, t0, proc)


def _wait_ready(pending: _Pending, paths: _Paths) -> float:
    service, proc = pending.service, pending.proc
    log = paths.log(service.name)
    deadline = pending.started + service.timeout
    while not service.ready(paths):
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"{service.name} exited with code {proc.returncode} while starting; "
                f"see {log}:\n{_tail(log)}"
            )
        if proc is None and _our_pid(service.name, paths) is None:
            raise StackError(f"{service.name} stopped while waiting for it; see {log}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{service.name} did not become ready at {service.address(paths)} within "
                f"{service.timeout:.0f} s; see {log}:\n{_tail(log)}\n"
                "Run `python -m relay.stack down` and `up` again; if it persists, read the log"
            )
        time.sleep(0.05)
    return time.monotonic() - pending.started


def _ensure_work_pool(paths: _Paths) -> str:
    r = _http(f"{PREFECT_API_URL}/work_pools/{WORK_POOL}")
    if r is not None and r[0] == 200:
        return f"work pool {WORK_POOL!r} present"
    env = _prefect_env(paths)
    env["PREFECT_API_URL"] = PREFECT_API_URL
    argv = [sys.executable, "-m", "prefect", "work-pool", "create", WORK_POOL, "--type", "process"]
    res = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    output = res.stdout + res.stderr
    if res.returncode != 0 and "already exists" not in output:
        raise StackError(
            f"prefect: creating work pool {WORK_POOL!r} failed ({shlex.join(argv)}):\n{output}"
        )
    return f"work pool {WORK_POOL!r} created"


# --- the base image ---------------------------------------------------------------------------


class _RootfsTar:
    """Writes a root filesystem straight into a tar file (root-owned, no staging directory)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.names: set[str] = set()
        self.now = int(time.time())

    def _info(self, arc: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arc)
        info.type, info.mode, info.mtime = kind, mode, self.now
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, arc: str, mode: int = 0o755) -> None:
        arc = arc.strip("/")
        if not arc or arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        self.names.add(arc)
        self.tar.addfile(self._info(arc, tarfile.DIRTYPE, mode))

    def data(self, arc: str, content: bytes, mode: int = 0o644) -> None:
        arc = arc.strip("/")
        self.dir(os.path.dirname(arc))
        info = self._info(arc, tarfile.REGTYPE, mode)
        info.size = len(content)
        self.names.add(arc)
        self.tar.addfile(info, io.BytesIO(content))

    def file(self, host: Path, arc: str) -> None:
        """Copy a host file (symlinks followed) to `arc`, keeping its mode."""
        arc = arc.strip("/")
        if arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        st = host.stat()
        info = self._info(arc, tarfile.REGTYPE, st.st_mode & 0o7777)
        info.size, info.mtime = st.st_size, int(st.st_mtime)
        self.names.add(arc)
        with open(host, "rb") as f:
            self.tar.addfile(info, f)

    def symlink(self, arc: str, target: str) -> None:
        arc = arc.strip("/")
        if arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        info = self._info(arc, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.names.add(arc)
        self.tar.addfile(info)

    def tree(
        self, host_dir: Path, arc_dir: str, exclude: Callable[[str], bool] = lambda _: False
    ) -> None:
        """Copy a directory tree without __pycache__ and without the top-level names for which
        `exclude` is true."""
        for root, dirs, files in os.walk(host_dir):
            top = Path(root) == host_dir
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (top and exclude(d)))
            rel = os.path.relpath(root, host_dir)
            arc_root = arc_dir if rel == "." else f"{arc_dir}/{rel}"
            self.dir(arc_root)
            for name in sorted(files):
                if top and exclude(name):
                    continue
                host = Path(root) / name
                if host.exists():  # skip dangling symlinks
                    self.file(host, f"{arc_root}/{name}")


def _stdlib_excluded(name: str) -> bool:
    return name in STDLIB_EXCLUDE or name.startswith("config-3")


def _image_arc(host_path: str) -> str:
    """Where a host library goes in the merged-/usr image (/lib/x → usr/lib/x)."""
    p = host_path.lstrip("/")
    for top in ("lib/", "lib64/", "lib32/", "bin/", "sbin/"):
        if p.startswith(top):
            return "usr/" + p
    return p


def _shared_libraries(binaries: list[Path]) -> list[str]:
    """Every library and the loader that `ldd` names for `binaries` (host paths)."""
    res = subprocess.run(["ldd", *map(str, binaries)], capture_output=True, text=True)
    libs: set[str] = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target == "not":
                raise StackError(
                    f"base-image: ldd cannot find a library of the host python: {line}"
                )
            if target.startswith("/"):
                libs.add(target)
        elif parts and parts[0].startswith("/") and line.startswith(("\t", " ")):
            libs.add(parts[0])  # the loader, e.g. /lib64/ld-linux-x86-64.so.2
    return sorted(libs)


def _run_time_libraries() -> list[str]:
    """Host paths of `_LOADED_AT_RUN_TIME`, as the dynamic loader's cache knows them."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    found = []
    for name in _LOADED_AT_RUN_TIME:
        paths = [
            line.split("=>", 1)[1].strip()
            for line in cache.splitlines()
            if line.strip().startswith(f"{name} ") and "=>" in line
        ]
        if not paths:
            raise StackError(f"base-image: {name} not found on the host (Debian's libgcc-s1)")
        found.append(paths[0])
    return found


def _pip_source() -> tuple[Path, Path | None]:
    spec = importlib.util.find_spec("pip")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"base-image: pip is not installed in {sys.executable}; cannot copy it")
    pip_dir = Path(next(iter(spec.submodule_search_locations)))
    dist_info: Path | None = None
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        version = importlib.metadata.version("pip")
        candidate = pip_dir.parent / f"pip-{version}.dist-info"
        dist_info = candidate if candidate.is_dir() else None
    return pip_dir, dist_info


def _image_site_packages() -> str:
    """The first /usr/local site dir Debian's python3.11 puts on sys.path (pip goes there)."""
    res = subprocess.run(
        [str(HOST_PYTHON), "-S", "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
    )
    for line in res.stdout.splitlines():
        if line.startswith("/usr/local/lib/python3"):
            return line.strip()
    for line in res.stdout.splitlines():
        if line.strip():
            return line.strip()
    return "/usr/local/lib/python3.11/dist-packages"


_PIP_LAUNCHER = b"""#!/usr/bin/python3
# pip launcher written by relay.stack (pip copied from Relay's venv)
import re
import sys
from pip._internal.cli.main import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def _write_rootfs(dest: Path) -> dict[str, str]:
    """Write the base image's root filesystem as a tar; returns facts for the image labels."""
    for need, hint in (
        (HOST_PYTHON, "needs Debian's python3.11"),
        (BUSYBOX, "needs Debian's busybox-static"),
        (CA_BUNDLE, "needs Debian's ca-certificates"),
    ):
        if not need.exists():
            raise StackError(f"base-image: {need} not found: run scripts/install-deps ({hint})")
    _require("ldd", "install Debian's libc-bin")
    site_dir = _image_site_packages()
    pip_dir, pip_dist_info = _pip_source()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        fs = _RootfsTar(tar)
        # merged /usr, like Debian 12
        for top in ("bin", "sbin", "lib", "lib64"):
            fs.dir(f"usr/{top}")
            fs.symlink(top, f"usr/{top}")
        for d in ("etc", "root", "home", "usr/local/bin", site_dir, "var/lib", "run"):
            fs.dir(d, 0o700 if d == "root" else 0o755)
        fs.dir("tmp", 0o1777)
        fs.dir("var/tmp", 0o1777)
        # the interpreter, its stdlib, and every shared library ldd names for them
        fs.file(HOST_PYTHON, "usr/bin/python3.11")
        fs.symlink("usr/bin/python3", "python3.11")
        fs.symlink("usr/bin/python", "python3.11")
        fs.tree(HOST_STDLIB, "usr/lib/python3.11", _stdlib_excluded)
        dynload = sorted((HOST_STDLIB / "lib-dynload").glob("*.so"))
        for lib in [*_shared_libraries([HOST_PYTHON, *dynload]), *_run_time_libraries()]:
            fs.file(Path(lib), _image_arc(lib))
        # a shell: busybox-static and its applets as symlinks in /bin (= /usr/bin)
        fs.file(BUSYBOX, "usr/bin/busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                fs.symlink(f"usr/bin/{applet}", "busybox")
        # pip, copied from the venv that runs Relay
        fs.tree(pip_dir, f"{site_dir}/pip")
        if pip_dist_info is not None:
            fs.tree(pip_dist_info, f"{site_dir}/{pip_dist_info.name}")
        for name in ("pip", "pip3", "pip3.11"):
            fs.data(f"usr/local/bin/{name}", _PIP_LAUNCHER, 0o755)
        # /etc: users, name resolution, CA certificates
        fs.data(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        fs.data("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        fs.data("etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        fs.data("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
        fs.file(CA_BUNDLE, "etc/ssl/certs/ca-certificates.crt")
        fs.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")
        fs.symlink("usr/lib/ssl/certs", "/etc/ssl/certs")
    version = subprocess.run(
        [str(HOST_PYTHON), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "python": version,
        "pip": importlib.metadata.version("pip"),
        "site": site_dir,
    }


_SELFTEST_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN pip --version && mkdir /x
USER 65534
CMD ["python3", "-c", "import os; print(os.getuid())"]
"""


def _verify_base_image(paths: _Paths, client: Any) -> None:
    """Run the checks that application Dockerfiles rely on; raise StackError if one fails."""
    labels = {MANAGED_LABEL: "true"}
    script = (
        "echo ok && ls /bin/ls >/dev/null && python3 -c "
        '\'import ssl, sqlite3, json, ctypes, uuid, hashlib; ctypes.CDLL("libgcc_s.so.1"); '
        'assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0\' '
        "&& pip --version"
    )
    out = client.containers.run(
        BASE_IMAGE_RELAY,
        ["sh", "-c", script],
        network_mode="host",
        remove=True,
        labels=labels,
    ).decode()
    if not out.startswith("ok") or "pip " not in out:
        raise StackError(f"base-image: unexpected self-test output: {out!r}")
    with tempfile.TemporaryDirectory(dir=paths.tmp) as ctx:
        Path(ctx, "Dockerfile").write_text(_SELFTEST_DOCKERFILE)
        tag = "relay/base-selftest:latest"
        client.images.build(
            path=ctx, tag=tag, network_mode="host", pull=False, rm=True, forcerm=True
        )
        try:
            uid = client.containers.run(
                tag, network_mode="host", remove=True, labels=labels
            ).decode()
        finally:
            client.images.remove(tag, force=True)
    if uid.strip() != "65534":
        raise StackError(f"base-image: USER 65534 self-test printed {uid!r}")


def _build_base_image(paths: _Paths) -> str:
    client = _docker_client(paths)
    tar_path = paths.tmp / "base-rootfs.tar"
    try:
        facts = _write_rootfs(tar_path)
        repo, tag = BASE_IMAGE_RELAY.split(":")
        description = (
            "Relay's local stand-in for python:3.11-slim: Debian's python3.11 "
            f"{facts['python']} copied from the host, busybox-static, pip {facts['pip']}; "
            "built by relay.stack without any image registry"
        )
        changes = [
            f"ENV PATH={IMAGE_PATH}",
            "ENV LANG=C.UTF-8",
            "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
            "ENV PIP_ROOT_USER_ACTION=ignore",
            f"LABEL {BASE_IMAGE_LABEL}={json.dumps(description)}",
            f"LABEL relay.python-version={facts['python']}",
            f"LABEL {REVISION_LABEL}={BASE_IMAGE_REVISION}",
            f"LABEL org.opencontainers.image.description={json.dumps(description)}",
            'CMD ["python3"]',
        ]
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag, changes=changes)
    finally:
        tar_path.unlink(missing_ok=True)
    image = client.images.get(BASE_IMAGE_RELAY)
    image.tag(*BASE_IMAGE.split(":"))
    try:
        _verify_base_image(paths, client)
    except Exception as e:
        # untag, so that the next `up` builds it again instead of trusting a broken image
        for ref in (BASE_IMAGE, BASE_IMAGE_RELAY):
            with contextlib.suppress(Exception):
                client.images.remove(ref, noprune=False)
        if isinstance(e, StackError):
            raise
        raise StackError(f"base-image: self-test failed: {e}") from e
    finally:
        client.close()
    return str(image.id)


def _ensure_base_image(paths: _Paths) -> tuple[str, str]:
    """Returns (verb, detail) for the progress line."""
    ours = _image_inspect(paths, BASE_IMAGE_RELAY)
    verb = "present"
    labels = ((ours or {}).get("Config") or {}).get("Labels") or {}
    if ours is not None and labels.get(REVISION_LABEL) != BASE_IMAGE_REVISION:
        ours = None  # an older revision: built again (images built FROM it keep theirs)
    if ours is None:
        _build_base_image(paths)
        ours = _image_inspect(paths, BASE_IMAGE_RELAY)
        verb = "built"
        if ours is None:
            raise StackError(f"base-image: {BASE_IMAGE_RELAY} missing right after building it")
    slim = _image_inspect(paths, BASE_IMAGE)
    note = ""
    if slim is None or (
        slim["Id"] != ours["Id"]
        and BASE_IMAGE_LABEL in ((slim.get("Config") or {}).get("Labels") or {})
    ):
        repo, tag = BASE_IMAGE.split(":")
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        _docker_api(paths, f"/images/{ours['Id']}/tag?{query}", method="POST")
    elif slim["Id"] != ours["Id"]:
        note = f"; {BASE_IMAGE} is another image, kept"
    size = ours.get("Size", 0) / 1e6
    return verb, f"{BASE_IMAGE} = {BASE_IMAGE_RELAY}, {size:.0f} MB{note}"


def _base_image_status(paths: _Paths, docker_up: bool) -> ComponentStatus:
    info = _image_inspect(paths, BASE_IMAGE_RELAY) if docker_up else None
    detail = f"{info.get('Size', 0) / 1e6:.0f} MB, {info['Id'][:19]}" if info else ""
    exists = info is not None
    return ComponentStatus("base-image", exists, None, BASE_IMAGE_RELAY, exists, detail)


# --- public API -------------------------------------------------------------------------------


def _line(name: str, text: str) -> str:
    return f"{name:<{_NAME_WIDTH}} {text}"


def up(progress: Callable[[str], None] = print) -> StackStatus:
    """Start every component that is not running yet; idempotent. Returns the status."""
    paths = _paths()
    paths.check_length()
    t_all = time.monotonic()
    with _locked(paths):
        paths.make_dirs()
        pending: list[_Pending] = []
        try:
            # Start all processes first, then wait: Prefect's start (and its first-time
            # migrations) overlaps with the base image build.
            for service in SERVICES:
                pending.append(_start(service, paths))
            for p in pending:
                if p.service.name == "prefect":
                    t0 = time.monotonic()
                    verb, detail = _ensure_base_image(paths)
                    took = time.monotonic() - t0
                    progress(_line("base-image", f"{verb} in {took:.1f} s ({detail})"))
                took = _wait_ready(p, paths)
                address = p.service.address(paths)
                if p.service.name == "prefect":
                    address += ", " + _ensure_work_pool(paths)
                if p.proc is None:
                    pid = _our_pid(p.service.name, paths)
                    progress(_line(p.service.name, f"running (pid {pid}, {address})"))
                else:
                    progress(_line(p.service.name, f"ready in {took:.1f} s ({address})"))
            worker = _start(WORKER, paths)
            pending.append(worker)
            took = _wait_ready(worker, paths)
            state = "running" if worker.proc is None else f"ready in {took:.1f} s"
            progress(_line("worker", f"{state} ({WORKER.address(paths)})"))
        except BaseException:
            # Leave nothing half-started: stop what this call started (not what ran before).
            started = [(p.service.name, p.proc.pid) for p in pending if p.proc is not None]
            if started:
                progress(_line("stack", "up failed; stopping what this call started"))
                _stop_processes(started, progress)
                for name, _ in started:
                    paths.pidfile(name).unlink(missing_ok=True)
                _unmount_leftovers(paths, progress)
            raise
    result = status()
    progress(_line("stack", f"up in {time.monotonic() - t_all:.1f} s (RELAY_HOME={paths.home})"))
    return result


def status() -> StackStatus:
    """What runs now: each component's name, running, pid, address (cheap; starts nothing)."""
    paths = _paths()
    result = StackStatus(paths.home)
    for service in (*SERVICES, WORKER):
        pid = _our_pid(service.name, paths)
        ready = pid is not None and service.ready(paths)
        result.components.append(
            ComponentStatus(service.name, pid is not None, pid, service.address(paths), ready)
        )
        if service.name == "dockerd":
            result.components.append(_base_image_status(paths, ready))
    return result


def environment() -> dict[str, str]:
    """The variables clients need to use the stack (``relay.stack env`` prints them)."""
    paths = _paths()
    return {
        "DOCKER_HOST": paths.docker_host,
        "RELAY_REGISTRY": REGISTRY_ADDR,
        "AWS_ENDPOINT_URL": MOTO_URL,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_API_URL": PREFECT_API_URL,
        "RELAY_HOME": str(paths.home),
    }


def _remove_managed_containers(paths: _Paths, progress: Callable[[str], None]) -> None:
    if not _docker_ready(paths):
        return
    t0 = time.monotonic()
    client = _docker_client(paths, timeout=60)
    try:
        containers = client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
        for c in containers:
            with contextlib.suppress(Exception):  # already gone (auto-remove) is fine
                c.remove(force=True)
    finally:
        client.close()
    if containers:
        took = time.monotonic() - t0
        progress(_line("containers", f"removed {len(containers)} in {took:.1f} s"))


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _stop_processes(targets: list[tuple[str, int]], progress: Callable[[str], None]) -> None:
    """SIGTERM all (in parallel), wait bounded, SIGKILL what is left."""
    t0 = time.monotonic()
    # dockerd shuts down containerd itself; signalling its whole group would race that.
    for name, pid in targets:
        _signal(pid, signal.SIGTERM, group=name != "dockerd")
    grace = {name: 20.0 if name == "dockerd" else 10.0 for name, _ in targets}
    left = dict(targets)
    while left:
        for name, pid in list(left.items()):
            if _cmdline(pid) is None:
                del left[name]
                progress(_line(name, f"stopped in {time.monotonic() - t0:.1f} s (pid {pid})"))
            elif time.monotonic() - t0 > grace[name]:
                _signal(pid, signal.SIGKILL, group=True)
                del left[name]
                progress(_line(name, f"killed after {grace[name]:.0f} s (pid {pid})"))
        time.sleep(0.05)


def _stop_orphan_containerd(paths: _Paths, progress: Callable[[str], None]) -> None:
    """A dockerd killed hard leaves its containerd running; stop it too."""
    pidfile = paths.exec_root / "containerd" / "containerd.pid"
    pid = _read_pid(pidfile)
    argv = _cmdline(pid) if pid else None
    if pid and argv and "containerd" in _programs(argv) and str(paths.exec_root) in " ".join(argv):
        _stop_processes([("containerd", pid)], progress)


def _unmount_leftovers(paths: _Paths, progress: Callable[[str], None]) -> None:
    """dockerd leaves e.g. <exec-root>/netns/default mounted after it exits."""
    prefix = str(paths.docker_dir) + "/"
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            mp = fields[1].encode().decode("unicode_escape")  # \040 for spaces
            if mp.startswith(prefix):
                mounts.append(mp)
    for mp in sorted(set(mounts), key=len, reverse=True):
        res = subprocess.run(["umount", mp], capture_output=True, text=True)
        if res.returncode != 0:
            res = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
        if res.returncode != 0:
            progress(_line("mounts", f"could not unmount {mp}: {res.stderr.strip()}"))
    if mounts:
        progress(_line("mounts", f"unmounted {len(mounts)} under {paths.docker_dir}"))


def down(progress: Callable[[str], None] = print) -> None:
    """Stop the stack and every process recorded in ``$RELAY_HOME/run/*.pid``; keeps all data."""
    paths = _paths()
    t_all = time.monotonic()
    with _locked(paths):
        _remove_managed_containers(paths, progress)
        targets: list[tuple[str, int]] = []
        for pidfile in sorted(paths.run.glob("*.pid")) if paths.run.is_dir() else []:
            name = pidfile.stem
            pid = _read_pid(pidfile)
            argv = _cmdline(pid) if pid is not None else None
            if pid is None or argv is None:
                pidfile.unlink(missing_ok=True)
                progress(_line(name, "not running (stale pidfile removed)"))
            elif not _pidfile_matches(name, argv, paths):
                pidfile.unlink(missing_ok=True)
                shown = shlex.join(argv)[:100]
                progress(
                    _line(name, f"pid {pid} is not ours ({shown}); left alone, pidfile removed")
                )
            else:
                targets.append((name, pid))
        _stop_processes(targets, progress)
        for name, _ in targets:
            paths.pidfile(name).unlink(missing_ok=True)
        _stop_orphan_containerd(paths, progress)
        _unmount_leftovers(paths, progress)
    progress(
        _line("stack", f"down in {time.monotonic() - t_all:.1f} s (data kept in {paths.home})")
    )


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m relay.stack up|down|status|env"
    if len(args) != 1 or args[0] not in {"up", "down", "status", "env"}:
        print(usage, file=sys.stderr)
        return 2
    try:
        if args[0] == "up":
            up()
        elif args[0] == "down":
            down()
        elif args[0] == "status":
            st = status()
            print(st)
            return 0 if st.all_running else 3
        else:
            for key, value in environment().items():
                print(f"export {key}={shlex.quote(value)}")
    except StackError as e:
        print(f"relay stack {args[0]}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
