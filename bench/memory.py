"""Peak memory of a Prefect worker during a real 20-service release on the local stack.

A synthetic application of 20 tiny standard-library HTTP services (four layers of five, each
service of a later layer depending on one of the layer before; each with a Dockerfile
`FROM ${BASE_IMAGE}`, `USER 65534`, a /healthz, and `true` as its unit and integration tests)
is committed to a temporary git repository. Its relay.yaml has one environment, dev
(`port_offset: 0`, no configuration secret; public ports 9100-9119, slots 9200-9319), the
security gates on (checkov and Relay's policies; the package gate against a stand-in of PyPI's
advisories on 127.0.0.1, `tests/advisories.py`, as the tests do) and CloudWatch off, so the
figure is about orchestration.

The release runs the way production runs do: a deployment of `flows/release.py:release` in a
process work pool of this benchmark, and a `prefect worker start` that the benchmark starts as
a child process (its own pool, started and stopped by PID). Every 0.2 s the benchmark reads
/proc for the worker and all its descendants: each process's VmHWM (the kernel's peak resident
set) and VmRSS. A process worker runs each flow run in a child process, so it reports:
  - the worker process's own peak (VmHWM);
  - the flow-run process's peak (`python -m prefect.engine`, VmHWM last read while it lived:
    the release flow with its service-pipeline subflows and tasks, all threads of that one
    process; Prefect 3.9's worker starts a workspace supervisor that execs into it, same PID,
    and the supervisor's own peak before the exec is reported apart);
  - the peak of the sum over the whole tree at one sample (worker, flow run and the commands
    they run: git, checkov, bandit, pytest, ...; image builds run in dockerd, not here), of
    PSS (shared pages split among the processes sharing them) and of RSS (counted in each);
  - the largest single other descendant (a tool run by a task: checkov, bandit, git, ...).
The issue gives no target for this figure. checkov runs only for Dockerfiles it has not seen
(Relay caches its results by the file's bytes under $RELAY_HOME/checkov), so after a first run
no checkov process appears in the tree.

Everything the release deployed (its containers and HAProxy routes), the flow runs, the
deployment and the work pool are removed at the end, also when it fails. Merges its numbers
into bench/results.json under `memory`. About 3-6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform as pyplatform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.advisories` is not an installed package

import devstack  # noqa: E402
from bench.results import write_results  # noqa: E402

# Prefect reads its settings at import time: the stack's environment first (as tests/conftest).
for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import docker  # noqa: E402
import yaml  # noqa: E402

from relay.platforms.docker import DockerPlatform  # noqa: E402
from relay.settings import relay_home  # noqa: E402
from relay.traffic import make_router  # noqa: E402
from tests.advisories import advisory_index  # noqa: E402

SERVICES = 20
LAYER = 5
BASE_PORT = 9100  # public 9100-9119; blue and green slots +100 / +200
ENVIRONMENT = "dev"
SAMPLE_S = 0.2
ID = ["-c", "user.name=Relay Bench", "-c", "user.email=bench@example.invalid"]

APP_PY = '''"""{name}: a tiny service of the memory benchmark (standard library only)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = {{"status": "ok"}}
        elif self.path == "/version":
            body = {{"service": "{name}", "version": os.environ.get("GIT_SHA", "unknown")}}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "{port}"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''

DOCKERFILE = """ARG BASE_IMAGE=python:3.11-slim
FROM ${{BASE_IMAGE}}
ARG GIT_SHA=unknown
ENV GIT_SHA=${{GIT_SHA}} PYTHONUNBUFFERED=1
WORKDIR /app
COPY app.py /app/app.py
USER 65534
EXPOSE {port}
CMD ["python3", "/app/app.py"]
"""


# -- the application ---------------------------------------------------------------------------


def make_app(repo: Path, app: str, advisories: str) -> list[str]:
    """Write and commit the 20-service application; its commit."""
    names = [f"m{i:02d}" for i in range(SERVICES)]
    services: dict[str, Any] = {}
    for i, name in enumerate(names):
        port = BASE_PORT + i
        directory = repo / "services" / name
        directory.mkdir(parents=True)
        (directory / "app.py").write_text(APP_PY.format(name=name, port=port))
        (directory / "Dockerfile").write_text(DOCKERFILE.format(port=port))
        services[name] = {
            "path": f"services/{name}",
            "port": port,
            "depends_on": [names[i - LAYER]] if i >= LAYER else [],
            "unit_tests": "true",
            "integration_tests": "true",
        }
    manifest = {
        "app": app,
        "services": services,
        "environments": {ENVIRONMENT: {"port_offset": 0, "secrets": None}},
        "security": {
            "packages": {"advisories": advisories},
        },
        "cloudwatch": {"metrics": False, "logs": False},
    }
    (repo / "relay.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True)
    subprocess.run(["git", *ID, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *ID, "commit", "-qm", "20 services"], cwd=repo, check=True)
    return names


def ports_free() -> list[int]:
    """Ports of 9100-9119, 9200-9219, 9300-9319 something listens on already."""
    import socket

    busy = []
    for base in (BASE_PORT, BASE_PORT + 100, BASE_PORT + 200):
        for port in range(base, base + SERVICES):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(port)
    return busy


# -- /proc sampling ----------------------------------------------------------------------------


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split among their sharers (no double counting)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Sampler:
    """Samples the worker and its descendants every SAMPLE_S seconds in a thread.

    Peaks are kept per (pid, command line): a process that execs (the workspace supervisor
    becomes `prefect.engine`, same PID) starts a new entry, and so does a fork that has not
    exec'd yet (it shows its parent's command line and shares its pages), which is then not
    mistaken for the tool it is about to become."""

    def __init__(self, worker_pid: int) -> None:
        self.worker = worker_pid
        self.peak_kb: dict[tuple[int, str], int] = {}  # highest VmHWM (or VmRSS) seen
        self.parent: dict[int, int] = {}
        self.tree_peak_rss_kb = 0
        self.tree_peak_pss_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        tree = _children()
        pids, todo = [], [self.worker]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for child in tree.get(pid, []):
                self.parent[child] = pid
                todo.append(child)
        rss = pss = 0
        for pid in pids:
            command = _cmdline(pid)[:160]
            status = _status_kb(pid)
            if not status:
                continue
            rss += status.get("VmRSS", 0)
            pss += _pss_kb(pid)
            peak = max(status.get("VmHWM", 0), status.get("VmRSS", 0))
            key = (pid, command)
            if peak > self.peak_kb.get(key, 0):
                self.peak_kb[key] = peak
        self.tree_peak_rss_kb = max(self.tree_peak_rss_kb, rss)
        self.tree_peak_pss_kb = max(self.tree_peak_pss_kb, pss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def summary(self) -> dict[str, Any]:
        # Prefect 3.9's process worker starts `prefect.runner._workspace_supervisor` per flow
        # run, which prepares the workspace and then execs `python -m prefect.engine` (same
        # PID): the flow-run process, where the release flow, its subflows and tasks run.
        children = {pid for pid, parent in self.parent.items() if parent == self.worker}
        worker = [k for k in self.peak_kb if k[0] == self.worker]
        engine = [k for k in self.peak_kb if k[0] in children and "prefect.engine" in k[1]]
        supervisor = [k for k in self.peak_kb if k[0] in children and k not in engine]
        engine_commands = {k[1] for k in engine + worker}
        tools = [
            k for k in self.peak_kb
            if k[0] not in children and k[0] != self.worker and k[1] not in engine_commands
        ]  # fmt: skip

        def top(keys: list[tuple[int, str]]) -> tuple[int, str] | None:
            return max(keys, key=lambda k: self.peak_kb[k], default=None)

        def mib(key: tuple[int, str] | None) -> float | None:
            return round(self.peak_kb[key] / 1024, 1) if key is not None else None

        e, sup, tool = top(engine), top(supervisor), top(tools)
        return {
            "worker_peak_mib": mib(top(worker)),
            "flow_run_peak_mib": mib(e),
            "flow_run_command": e[1] if e else None,
            "flow_run_processes": len({k[0] for k in engine}),
            "supervisor_peak_mib": mib(sup),
            "supervisor_command": sup[1] if sup else None,
            "tree_peak_rss_mib": round(self.tree_peak_rss_kb / 1024, 1),
            "tree_peak_pss_mib": round(self.tree_peak_pss_kb / 1024, 1),
            "largest_tool_process_mib": mib(tool),
            "largest_tool_process": tool[1] if tool else None,
            "processes_seen": len({k[0] for k in self.peak_kb}),
            "samples": self.samples,
            "sample_interval_s": SAMPLE_S,
        }


# -- Prefect: pool, deployment, worker ---------------------------------------------------------


@contextmanager
def prefect_deployment(pool: str) -> Iterator[str]:
    """A process work pool and a deployment of flows/release.py:release in it; both (and the
    deployment's runs) deleted at the end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    from flows.release import release

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment_id = None
    try:
        deployment_id = release.to_deployment(
            name=pool, work_pool_name=pool, job_variables={"working_dir": str(ROOT)}
        ).apply()
        yield f"release/{pool}"
    finally:
        with get_client(sync_client=True) as client:
            if deployment_id is not None:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
                    ),
                    limit=50,
                )
                for run in runs:
                    client.delete_flow_run(run.id)
                client.delete_deployment(deployment_id)
            client.delete_work_pool(pool)


@contextmanager
def worker(pool: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect worker start` for `pool`, ready (it logged "started!"); stopped by PID."""
    env = {
        **os.environ,
        **devstack.environment(),
        "PYTHONPATH": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    env.pop("PREFECT_LOGGING_LEVEL", None)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", pool]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "started!" not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready in 90 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the worker and its children
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run_release(deployment: str, repo: Path, timeout: float) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    t0 = time.monotonic()
    run = run_deployment(
        deployment,
        parameters={"repository": str(repo), "commit": "HEAD"},
        timeout=0,
    )
    state = run.state
    with get_client(sync_client=True) as client:
        while time.monotonic() - t0 < timeout:
            run = client.read_flow_run(run.id)
            state = run.state
            if state is not None and state.is_final():
                break
            time.sleep(1)
    wall = time.monotonic() - t0
    return {
        "flow_run_id": str(run.id),
        "state": state.type.value if state else None,
        "state_name": state.name if state else None,
        "message": (state.message or "")[:500] if state else None,
        "wall_s": round(wall, 1),
        "run_s": round(run.total_run_time.total_seconds(), 1) if run.total_run_time else None,
    }


@contextmanager
def cleanup(app: str) -> Iterator[None]:
    try:
        yield
    finally:
        with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
            router = make_router("haproxy", name=f"{app}-{ENVIRONMENT}", home=relay_home())
            removed = DockerPlatform(client, router).remove_all(app, ENVIRONMENT)
            router.remove_managed_routes()
        print(f"cleanup: removed {removed} container(s) and the HAProxy routes of {app}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1200, help="release timeout, seconds")
    args = parser.parse_args()
    os.chdir(ROOT)  # the deployment's entrypoint is relative to here (flows/release.py)
    busy = ports_free()
    if busy:
        print(f"memory: ports in use, not measured: {busy}", file=sys.stderr)
        return 1
    started = time.monotonic()
    app = f"bench-mem-{uuid.uuid4().hex[:6]}"
    pool = f"bench-memory-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="relay-bench-memory-"))
    load_before = os.getloadavg()
    try:
        with advisory_index() as advisories, cleanup(app):
            repo = work / "app"
            names = make_app(repo, app, advisories)
            with prefect_deployment(pool) as deployment, worker(pool, work / "worker.log") as w:
                idle = _status_kb(w.pid)
                with Sampler(w.pid) as sampler:
                    release = run_release(deployment, repo, args.timeout)
                    time.sleep(2 * SAMPLE_S)
                memory = sampler.summary()
                memory["worker_idle_rss_mib"] = round(idle.get("VmRSS", 0) / 1024, 1)
                memory["worker_after_mib"] = round(_status_kb(w.pid).get("VmRSS", 0) / 1024, 1)
    except BaseException:
        print(f"memory: failed; worker log kept in {work}", file=sys.stderr)
        raise
    payload = {
        "services": len(names),
        "app": app,
        "release": release,
        "memory": memory,
        "target": None,
        "config": {
            "environment": ENVIRONMENT,
            "ports": f"{BASE_PORT}-{BASE_PORT + SERVICES - 1} (+100, +200)",
            "concurrency": int(os.environ.get("RELAY_CONCURRENCY", "4")),
            "security_gates": "compliance (checkov + Relay policies), packages (local stand-in)",
            "cloudwatch": False,
        },
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"nproc": os.cpu_count(), "python": pyplatform.python_version()},
        "runtime_s": round(time.monotonic() - started, 1),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"\nWorker peak memory, one release of {len(names)} services (no target in issue #10)")
    print(f"release: {release['state_name']} in {release['wall_s']} s")
    rows = [
        ("worker process, peak (VmHWM)", memory["worker_peak_mib"]),
        ("flow-run process (prefect.engine), peak", memory["flow_run_peak_mib"]),
        ("its workspace supervisor, peak", memory["supervisor_peak_mib"]),
        ("worker + all descendants, peak sum of PSS", memory["tree_peak_pss_mib"]),
        ("worker + all descendants, peak sum of RSS", memory["tree_peak_rss_mib"]),
        ("largest tool process run by a task", memory["largest_tool_process_mib"]),
    ]
    for label, value in rows:
        print(f"{label:<45}{value if value is not None else 'n/a':>10} MiB")
    print(f"  (largest tool: {memory['largest_tool_process']})")
    print(f"written to {write_results('memory', payload)} under 'memory'")
    if release["state"] != "COMPLETED":
        print(f"memory: the release did not complete: {release['message']}", file=sys.stderr)
        print((work / "worker.log").read_text(errors="replace")[-3000:], file=sys.stderr)
        print(f"(worker log kept in {work})", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
