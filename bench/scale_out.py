"""Scale-out benchmark: a release of 200 services with nothing to build, its service pipelines
spread over one worker and then over two (`RELAY_SERVICE_RUNS=deployments`), on PostgreSQL.

It brings its own Prefect server on a throwaway PostgreSQL cluster (bench/postgres.py), Relay's
database in that cluster, and its own process workers of a `relay` pool there (each taking 4
runs at once, as the stack's do), whatever mode the stack runs in; the stack's Docker engine and
registry hold the images. The measurement runs in a child process (Prefect binds its API URL at
import).

A synthetic application of N identical small services (one directory each, no build stages) is
released once to build and push every image and deploy one service (`services: [s000]`). Then
the same commit is released again, so nothing is built and nothing deployed: each service's
build pipeline is a child run of the `build-service` deployment that finds its image by key and
runs the security gates on it. The release runs in this process with `RELAY_CONCURRENCY` service
runs at once (16), more than one worker takes (each takes 4), so a second worker has work.

Figures per measurement:

- wall: the release's own wall time;
- orchestration share: of the service runs' lifetimes (creation to end), the part before they
  started running: waiting for a worker slot, the worker's poll, the process start. The rest is
  their own work (checkout, image lookup, gates);
- the ratio of the one-worker wall time to the two-worker one (2.0 would be perfect scaling
  with two machines; both workers here share this machine's cores, and every service run is a
  Python process that spends about 3 s of CPU importing Prefect and Relay before it runs).

Prints a table and merges the numbers into bench/results.json under `scale_out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.postgres import prefect_on_postgres, stop  # noqa: E402
from bench.results import write_results  # noqa: E402

for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ["RELAY_SERVICE_RUNS"] = "deployments"
os.environ["RELAY_CONCURRENCY"] = "16"  # read when flows.release is imported
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
ON_SERVER = "RELAY_BENCH_SCALE_SERVER"  # set in the child: the bench's own Prefect API

if os.environ.get(ON_SERVER):  # the child: everything below talks to the bench's server
    os.environ["PREFECT_API_URL"] = os.environ[ON_SERVER]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from deployments.register import register_deployments
    from flows.release import release
    from tasks.support.runs import flow_runs_under

EXAMPLE = ROOT / "examples" / "shop" / "services" / "payments"
ID = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
PORT_OFFSET = 0  # only s000 is ever deployed, on 127.0.0.1:20000


def make_app(root: Path, count: int) -> tuple[Path, str, str]:
    """A git repository of `count` services; returns (repository, app, commit)."""
    app = f"scale-{uuid.uuid4().hex[:6]}"
    repo = root / "app"
    lines = [f"app: {app}", "services:"]
    for n in range(count):
        name = f"s{n:03d}"
        directory = repo / "services" / name
        directory.mkdir(parents=True)
        shutil.copy(EXAMPLE / "app.py", directory / "app.py")
        (directory / "Dockerfile").write_text(
            "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\nARG GIT_SHA=unknown\n"
            "ENV GIT_SHA=${GIT_SHA} PYTHONUNBUFFERED=1\nWORKDIR /app\n"
            'COPY app.py /app/app.py\nUSER 65534\nCMD ["python3", "/app/app.py"]\n'
        )
        lines += [
            f"  {name}:",
            f"    path: services/{name}",
            f"    port: {20000 + 3 * n}",  # each also takes port + 100 and + 200 (slots)
            "    build: null",
            "    unit_tests: null",
            "    sast: null",
        ]
    lines += ["environments:", "  dev:", "    platform: docker", f"    port_offset: {PORT_OFFSET}"]
    lines += ["    secrets: null"]
    (repo / "relay.yaml").write_text("\n".join(lines) + "\n")
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True)
    subprocess.run(["git", *ID, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", *ID, "-C", str(repo), "commit", "-qm", "scale"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return repo, app, sha


def release_once(repo: Path, sha: str, label: str) -> dict[str, Any]:
    """One release of `sha` (deploying s000 only); its wall time and its service runs."""
    name = f"release-{label}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    asyncio.run(release.with_options(flow_run_name=name)(str(repo), sha, services=["s000"]))
    wall = time.monotonic() - started
    with get_client(sync_client=True) as client:
        [root] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )
        children = [r for _, r in flow_runs_under(client, [root.id]) if r.deployment_id]
    waited, lived = [], []
    workers: dict[str, int] = {}
    for run in children:
        if run.start_time is None or run.end_time is None:
            continue
        waited.append((run.start_time - run.created).total_seconds())
        lived.append((run.end_time - run.created).total_seconds())
        worker = run.labels.get("prefect.worker.name", "?")
        workers[worker] = workers.get(worker, 0) + 1
    return {
        "wall_s": round(wall, 2),
        "service_runs": len(children),
        "orchestration_share": round(sum(waited) / sum(lived), 3) if lived else None,
        "median_wait_s": round(statistics.median(waited), 2) if waited else None,
        "median_lifetime_s": round(statistics.median(lived), 2) if lived else None,
        "runs_per_worker": workers,
    }


def start_worker(number: int, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """A process worker of the bench server's pool, its own RELAY_HOME as a machine's."""
    home = logs / f"worker-{number}"
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "relay",
            "--name", f"bench-{number}", "--limit", "4"]  # fmt: skip
    with (logs / f"worker-{number}.log").open("wb") as log:
        return subprocess.Popen(
            argv, env={**env, "RELAY_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "2"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
        )  # fmt: skip


def measure(count: int) -> dict[str, Any]:
    """In the child: the app, a warm-up release, then one and two workers' releases."""
    register_deployments("", names=["build-service", "deploy-service"])
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="relay-scale-") as tmp:
        logs = Path(tmp) / "workers"
        logs.mkdir()
        repo, app, sha = make_app(Path(tmp), count)
        print(f"scale_out: {count} services ({app}); building every image once", file=sys.stderr)
        workers = [start_worker(1, env, logs)]
        try:
            time.sleep(5)
            warm = release_once(repo, sha, "warm")
            print(f"scale_out: warm-up {warm['wall_s']} s; now one worker", file=sys.stderr)
            one = release_once(repo, sha, "one")
            print(f"scale_out: one worker {one['wall_s']} s; now two", file=sys.stderr)
            workers.append(start_worker(2, env, logs))
            time.sleep(5)
            two = release_once(repo, sha, "two")
        finally:
            for worker in workers:
                stop(worker)
    return {"app": app, "warm_up": warm, "one_worker": one, "two_workers": two}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    args = parser.parse_args()
    if os.environ.get(ON_SERVER):
        print(json.dumps(measure(args.services)), file=sys.stdout, flush=True)
        return 0
    with prefect_on_postgres() as server:
        relay_db = server.cluster.create_database("relay")
        storage = Path(tempfile.mkdtemp(prefix="relay-scale-results-"))
        env = {
            **os.environ,
            ON_SERVER: server.api_url,
            "PREFECT_API_URL": server.api_url,
            "RELAY_DATABASE_URL": relay_db,
            "PREFECT_LOCAL_STORAGE_PATH": str(storage),
        }
        pool = [
            sys.executable,
            "-m",
            "prefect",
            "work-pool",
            "create",
            "relay",
            "--type",
            "process",
        ]
        subprocess.run(pool, env=env, check=True, capture_output=True, timeout=120)
        child = subprocess.run(
            [sys.executable, __file__, "--services", str(args.services)],
            env=env, stdout=subprocess.PIPE, text=True, timeout=5400,  # progress: stderr
        )  # fmt: skip
        shutil.rmtree(storage, ignore_errors=True)
    if child.returncode != 0:
        print(child.stdout[-3000:], file=sys.stderr)
        return child.returncode
    lines = child.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line)
    measured = json.loads(lines[-1])
    one, two = measured["one_worker"], measured["two_workers"]
    ratio = round(one["wall_s"] / two["wall_s"], 2)
    results = {
        "services": args.services,
        "concurrency": 16,
        "worker_limit": 4,
        "cpus": os.cpu_count(),
        **measured,
        "speedup_two_over_one": ratio,
    }
    print(
        f"{'workers':>8} {'wall s':>8} {'runs':>5} {'orch. share':>12} {'wait s':>7} {'life s':>6}"
    )
    for label, r in (("1", one), ("2", two)):
        share, wait, run = r["orchestration_share"], r["median_wait_s"], r["median_lifetime_s"]
        print(
            f"{label:>8} {r['wall_s']:>8.1f} {r['service_runs']:>5} {share:>12.1%} "
            f"{wait:>7.2f} {run:>6.2f}"
        )
    print(
        f"two workers are {ratio:.2f}x as fast as one on {os.cpu_count()} CPUs "
        "(2.0 would be perfect scaling on two machines)"
    )
    print(f"written to {write_results('scale_out', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
