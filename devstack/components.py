"""The stack's processes, and only this module knows every one of them.

dockerd     A private Docker engine (Debian ``docker.io``) that builds and runs the service
            images. It runs with ``--bridge=none --iptables=false --ip-forward=false
            --ip-masq=false`` because this machine may only reach 127.0.0.0/8: there is no
            docker0 bridge and no NAT, and containers use ``--network host``. Its data-root is
            kept across ``down``/``up``, so whatever was built once stays cached on the machine.
registry    Debian's ``docker-registry`` (CNCF distribution) on 127.0.0.1:5000 stands in for ECR.
            Images are pushed to it, and every environment deploys by the digest it returns.
moto        ``moto_server`` on 127.0.0.1:5001 stands in for AWS (Secrets Manager, CloudWatch,
            Logs, the ECR API, STS). boto3 reaches it through ``AWS_ENDPOINT_URL`` with no code
            changes.
prometheus  Debian's ``prometheus`` on 127.0.0.1:9095, scraping every second the Prometheus
            exporter of each HAProxy router Relay runs (their scrape targets are files under
            ``$RELAY_HOME/prometheus/targets``), so canaries can be judged by PromQL
            (``analysis.metrics: prometheus``). Keeps a day of data.
postgres    With ``--postgres`` only: Debian's PostgreSQL on 127.0.0.1:5433, its data under
            ``/var/lib/relay-postgres`` (kept), holding the Prefect server's database and
            Relay's (``RELAY_DATABASE_URL``). It starts first: the others need it.
prefect     A Prefect server on 127.0.0.1:4200 (SQLite under ``$RELAY_HOME/prefect``, or the
            ``prefect`` database of ``postgres``) and the process work pool ``relay``, which
            `ensure_work_pool` creates. Started as a subprocess; nothing here imports Prefect.
worker      Prefect workers of that pool (``--workers N``: ``worker``, ``worker-2``...), with
            the stack's environment, each but the first with a ``RELAY_HOME`` of its own. They
            start after the others: they need the Prefect server and the work pool.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from devstack.docker_api import docker_ready
from devstack.endpoints import (
    MOTO_PORT,
    MOTO_URL,
    POSTGRES_PORT,
    PREFECT_API_URL,
    PREFECT_PORT,
    PROMETHEUS_PORT,
    PROMETHEUS_URL,
    REGISTRY_ADDR,
    WORK_POOL,
    environment,
    postgres_url,
)
from devstack.errors import StackError
from devstack.mode import MAX_WORKERS, StackMode, load_mode
from devstack.paths import Paths
from devstack.supervisor import LOG_MARKER, Service, programs, require
from relay.settings import prometheus_targets

_DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")


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


def _dockerd_argv(p: Paths) -> list[str]:
    dockerd = require("dockerd", "run scripts/install-deps (needs Debian's docker.io)")
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


def _dockerd_env(p: Paths) -> dict[str, str]:
    env = dict(os.environ)
    # dockerd finds containerd, runc and docker-init on PATH.
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    # Its awslogs log driver (cloudwatch.service_logs) writes to the stack's moto with moto's
    # credentials; on a real host the engine's own instance role does.
    env["AWS_ACCESS_KEY_ID"] = "testing"
    env["AWS_SECRET_ACCESS_KEY"] = "testing"
    env.pop("AWS_SESSION_TOKEN", None)
    return env


def _dockerd_prepare(p: Paths) -> None:
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


def _registry_prepare(p: Paths) -> None:
    require("docker-registry", "run scripts/install-deps (needs Debian's docker-registry)")
    _registry_host_port()
    p.registry_config.parent.mkdir(parents=True, exist_ok=True)
    p.registry_config.write_text(
        "# written by devstack: Relay's local stand-in for ECR\n"
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


def _moto_prepare(p: Paths) -> None:
    if not _moto_server().exists():
        raise StackError(
            f"moto_server not found next to {sys.executable}: "
            "pip install 'moto[server]' into the Python that runs Relay"
        )


def _prometheus_prepare(p: Paths) -> None:
    require("prometheus", "run scripts/install-deps (needs Debian's prometheus)")
    targets = prometheus_targets(p.home)
    targets.mkdir(parents=True, exist_ok=True)
    p.prometheus_data.mkdir(parents=True, exist_ok=True)
    # One-second scrapes: a canary window is a few seconds long, and `increase()` needs two
    # samples in it. `scope=server`: only the per-server series analysis reads.
    p.prometheus_config.write_text(
        "# written by devstack: scrapes every HAProxy router Relay runs on this machine\n"
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: relay-haproxy\n"
        "    params:\n      scope: [server]\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets}/*.json']\n"
        "        refresh_interval: 2s\n"
    )


def _prometheus_argv(p: Paths) -> list[str]:
    return [
        "prometheus",
        "--config.file",
        str(p.prometheus_config),
        "--storage.tsdb.path",
        str(p.prometheus_data),
        "--storage.tsdb.retention.time",
        "1d",
        "--web.listen-address",
        f"127.0.0.1:{PROMETHEUS_PORT}",
        "--log.level",
        "warn",
    ]


def _prefect_env(p: Paths) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(p.prefect_home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if load_mode(p).postgres:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres_url("prefect", "postgresql+asyncpg")
    return env


# Set by `make test` (scripts/test): a Prefect server this command starts begins with an empty
# database. Runs pile up (a test session makes thousands), and the embedded SQLite server
# slows down and answers 503s once its file reaches a few hundred MB; the previous database
# is kept beside it as prefect.db.previous, one generation.
FRESH_PREFECT_DB = "RELAY_PREFECT_FRESH_DB"


def _prefect_prepare(p: Paths) -> None:
    if importlib.util.find_spec("prefect") is None:  # locate only; devstack never imports prefect
        raise StackError(
            f"prefect is not installed in {sys.executable}: pip install prefect==3.9.1"
        )
    if os.environ.get(FRESH_PREFECT_DB) == "1" and load_mode(p).postgres:
        create_databases(p, fresh=("prefect",))
    elif os.environ.get(FRESH_PREFECT_DB) == "1":
        for suffix in ("", "-wal", "-shm"):
            db = p.prefect_home / f"prefect.db{suffix}"
            if db.exists():
                db.replace(p.prefect_home / f"prefect.db.previous{suffix}")


def _ok(url: str, expect: int = 200) -> Callable[[Paths], bool]:
    def check(_: Paths) -> bool:
        r = _http(url, timeout=2.0)
        return r is not None and r[0] == expect

    return check


PG_BIN = Path("/usr/lib/postgresql/15/bin")
_AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def _postgres_data(p: Paths) -> Path:
    return p.postgres_dir / "data"


def _postgres_prepare(p: Paths) -> None:
    if not (PG_BIN / "initdb").exists():
        raise StackError(
            f"--postgres: {PG_BIN / 'initdb'} is missing; run scripts/install-deps (Debian's "
            "postgresql package)"
        )
    p.postgres_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(p.postgres_dir, "postgres", "postgres")
    if not (_postgres_data(p) / "PG_VERSION").exists():
        initdb = [str(PG_BIN / "initdb"), "-D", str(_postgres_data(p)), "-A", "trust"]
        done = subprocess.run([*_AS_POSTGRES, *initdb, "-U", "postgres"], capture_output=True,
                              text=True, timeout=120, cwd="/")  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"postgres: initdb failed:\n{done.stdout}{done.stderr}")


def _postgres_argv(p: Paths) -> list[str]:
    return [
        *_AS_POSTGRES,
        str(PG_BIN / "postgres"),
        "-D",
        str(_postgres_data(p)),
        "-p",
        str(POSTGRES_PORT),
        "-k",
        str(p.postgres_dir),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=400",  # the Prefect server's pool, every worker's and test's engines
    ]


def _postgres_ready(p: Paths) -> bool:
    argv = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT)]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def create_databases(p: Paths, fresh: tuple[str, ...] = ()) -> str:
    """Prefect's and Relay's databases, created when missing; those in `fresh` made anew
    (`make test`'s empty Prefect database)."""
    made = []
    for name in ("prefect", "relay"):
        where = ["-h", "127.0.0.1", "-p", str(POSTGRES_PORT)]
        if name in fresh:
            subprocess.run([*_AS_POSTGRES, str(PG_BIN / "dropdb"), *where, "--if-exists",
                            "--force", name], capture_output=True, timeout=60, cwd="/")  # fmt: skip
        done = subprocess.run([*_AS_POSTGRES, str(PG_BIN / "createdb"), *where, name],
                              capture_output=True, text=True, timeout=60, cwd="/")  # fmt: skip
        if done.returncode == 0:
            made.append(name)
        elif "already exists" not in done.stderr:
            raise StackError(f"postgres: createdb {name} failed: {done.stderr.strip()}")
    return f"databases {', '.join(made)} created" if made else "databases present"


POSTGRES = Service(
    name="postgres",
    address=lambda p: f"127.0.0.1:{POSTGRES_PORT}, data in {_postgres_data(p)}",
    argv=_postgres_argv,
    is_ours=lambda a, p: "postgres" in programs(a) and str(_postgres_data(p)) in a,
    ready=_postgres_ready,
    timeout=60.0,
    port=("127.0.0.1", POSTGRES_PORT),
    port_env="RELAY_POSTGRES_PORT",
    prepare=_postgres_prepare,
)


SERVICES: tuple[Service, ...] = (
    Service(
        name="dockerd",
        address=lambda p: p.docker_host,
        argv=_dockerd_argv,
        is_ours=lambda a, p: "dockerd" in programs(a) and str(p.exec_root) in a,
        ready=docker_ready,
        timeout=20.0,
        env=_dockerd_env,
        prepare=_dockerd_prepare,
        writes_own_pidfile=True,
    ),
    Service(
        name="registry",
        address=lambda p: REGISTRY_ADDR,
        argv=lambda p: ["docker-registry", "serve", str(p.registry_config)],
        is_ours=lambda a, p: "docker-registry" in programs(a) and str(p.registry_config) in a,
        ready=lambda p: _ok(f"http://{REGISTRY_ADDR}/v2/")(p),
        timeout=20.0,
        port=_registry_host_port(strict=False),
        port_env="RELAY_REGISTRY_ADDR",
        prepare=_registry_prepare,
    ),
    Service(
        name="moto",
        address=lambda p: MOTO_URL,
        argv=lambda p: [str(_moto_server()), "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        is_ours=lambda a, p: "moto_server" in programs(a) and str(MOTO_PORT) in a,
        ready=_ok(f"{MOTO_URL}/moto-api/"),
        timeout=30.0,
        port=("127.0.0.1", MOTO_PORT),
        port_env="RELAY_MOTO_PORT",
        prepare=_moto_prepare,
    ),
    Service(
        name="prometheus",
        address=lambda p: PROMETHEUS_URL,
        argv=_prometheus_argv,
        is_ours=lambda a, p: "prometheus" in programs(a) and str(p.prometheus_config) in a,
        ready=_ok(f"{PROMETHEUS_URL}/-/ready"),
        timeout=30.0,
        port=("127.0.0.1", PROMETHEUS_PORT),
        port_env="RELAY_PROMETHEUS_PORT",
        prepare=_prometheus_prepare,
    ),
    Service(
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
            "prefect" in programs(a) and "server" in a and "start" in a and str(PREFECT_PORT) in a
        ),
        ready=_ok(f"{PREFECT_API_URL}/health"),
        timeout=90.0,  # the first start runs the database migrations
        port=("127.0.0.1", PREFECT_PORT),
        port_env="RELAY_PREFECT_PORT",
        env=_prefect_env,
        prepare=_prefect_prepare,
    ),
)


# How many runs each worker of a several-worker stack takes at once, like a machine's capacity:
# a burst of service runs then lands on more than one worker. A release that runs on a worker
# holds a slot while its service runs wait for theirs, so keep room for them.
WORKER_LIMIT = 4


def _limit(p: Paths) -> list[str]:
    return ["--limit", str(WORKER_LIMIT)] if load_mode(p).workers > 1 else []


def _worker_name(number: int) -> str:
    return "worker" if number == 1 else f"worker-{number}"


def _worker(number: int) -> Service:
    """Worker `number` of the pool, named for this machine and its number."""
    name = _worker_name(number)

    def env(p: Paths) -> dict[str, str]:
        # The worker runs flows that use the stack: it gets the stack's environment (with its
        # own RELAY_HOME), and polls every 2 s instead of 10 so local runs start promptly.
        home = p.worker_home(number)
        home.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            **environment(),
            "RELAY_HOME": str(home),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }

    def started(p: Paths) -> bool:
        """The worker logs "... started!" once it polls its work pool (since its latest start)."""
        try:
            text = p.log(name).read_text(errors="replace")
        except OSError:
            return False
        return "started!" in text.rsplit(LOG_MARKER, 1)[-1]

    worker_id = f"relay-{os.uname().nodename}" + ("" if number == 1 else f"-{number}")
    return Service(
        name=name,
        address=lambda p: f"work pool '{WORK_POOL}' as {worker_id}",
        argv=lambda p: [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            WORK_POOL,
            "--name",
            worker_id,
            *_limit(p),
        ],
        is_ours=lambda a, p: (
            "prefect" in programs(a) and "worker" in a and WORK_POOL in a and worker_id in a
        ),
        ready=started,
        timeout=60.0,
        env=env,
    )


def services(mode: StackMode) -> tuple[Service, ...]:
    """The processes of a stack in `mode`, in the order they start (the workers apart)."""
    return (POSTGRES, *SERVICES) if mode.postgres else SERVICES


def workers(mode: StackMode) -> tuple[Service, ...]:
    return tuple(_worker(n) for n in range(1, mode.workers + 1))


# The first worker, under its historical name: what a one-worker stack runs.
WORKER = _worker(1)

_SERVICE_BY_NAME = {
    s.name: s for s in (POSTGRES, *SERVICES, *workers(StackMode(workers=MAX_WORKERS)))
}


def pidfile_matches(name: str, argv: list[str], paths: Paths) -> bool:
    """Does this command line look like what was started under `name`? (recycled-PID guard)"""
    service = _SERVICE_BY_NAME.get(name)
    if service is not None:
        return service.is_ours(argv, paths)
    # Other Relay code records its processes as `<program>-<what>.pid` (e.g. haproxy-api.pid).
    return name.split("-", 1)[0] in programs(argv)


def ensure_work_pool(paths: Paths) -> str:
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
