"""Webhook benchmark: how fast the Git webhook receiver turns a push into a release run.

The receiver (`deployments.webhooks.create_app`) is served by uvicorn in a child process of
this script (started and stopped by PID, on a free port in 8800-8899), set up as
tests/deployments/test_webhooks.py does against the stack's real Prefect server: a deployment
of `flows/release.py:release` (`to_deployment(...).apply()`) in a work pool of this benchmark
that has no worker (so the runs stay SCHEDULED and nothing is built), a local git copy of
examples/shop whose relay.yaml maps `develop` to `dev`, settings that map the sample's
repository (Codertocat/Hello-World) to it, and GitHub's real push sample
(/work/shared/webhook-payloads/github/push.with-new-branch.payload.json) moved to `develop` and
a commit of that copy, signed with HMAC-SHA256. Every request opens a new connection and gives
up after 10 s, as GitHub's deliveries do.

The receiver answers 202 once a delivery is stored in its queue (a SQLite file in its state
directory); its dispatcher then reads relay.yaml at the commit and creates the run. So each
series measures two things: the latency to the 202, and the time from the 202 to the run's
creation on the server (its `created`, target: p99 <= 30 s), after which the deployment's runs
are matched to the deliveries by idempotency key (`github:<delivery id>`): a delivery answered
202 without a run within RUN_WAIT_S is lost, one with two runs doubled. Each delivery's state
is also read from the receiver's status endpoint (started / queued / ignored / failed).

1. Latency, one delivery at a time (`--deliveries`, default 200), each with its own
   X-GitHub-Delivery id, so each creates a flow run: the time from sending the request to
   reading the 202; then every delivery's run is looked up on the server. Two more series put
   it in context: GitHub's `ping` (authenticated, parsed, answered "pong" without git, SQLite
   or Prefect) and pushes that each name a *new* commit, committed to the repository just
   before it is sent (`--new-commit-deliveries`, default 50), so the dispatcher's checkout must
   fetch and move its working tree. The headline series reuses one commit.
2. Sustained rate: `--rate` deliveries per second (default 20) for `--seconds` (default 15),
   each due at i / rate and sent by the next free one of `--threads` client threads (default
   16; when all of them wait on slow answers, sends fall behind and the lag is reported), to a
   second deployment and a fresh receiver. Then: the answers; the deployment's runs on the
   server, once the receiver has finished every request (one the client gave up on may still
   create a run), against the deliveries and the receiver's own 202s (none lost, none doubled,
   one idempotency key each); and 20 accepted deliveries sent again with the same ids, which
   must create nothing.

Where the time goes: the child process wraps, in its own memory only (the receiver's source is
not changed), what a request passes through (the queue's enqueue and the whole ASGI request)
and logs the durations per delivery; the tables show medians per series.
The Prefect server's log is read for its "database is locked" errors during each series.
`--reaped` adds both parts again with each run checked and deleted as soon as the status
endpoint shows it started, so no run lives long enough to turn Late (the server's late-runs
service writes then).

Prints the tables and merges the numbers into bench/results.json under the `webhooks` key
(other keys are left alone). Everything it creates (flow runs, deployments, work pool, the
child process, temporary files) is removed at the end, also when it fails. About 4-5 minutes.
Run it with `make bench` (which brings the stack up if needed; `WEBHOOK_ARGS="--rate 10"`), or
alone: `.venv/bin/python bench/webhooks.py --deliveries 200 --rate 20 --seconds 15`.
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import hmac
import http.client
import json
import os
import platform as pyplatform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.postgres import ON_POSTGRES, rerun_on_postgres  # noqa: E402
from bench.results import write_results  # noqa: E402

# Prefect reads its settings at import time: the stack's environment first (as tests/conftest).
for _key, _value in devstack.environment().items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PAYLOADS = ROOT.parent / "shared" / "webhook-payloads" / "github"
SHOP = ROOT / "examples" / "shop"
REPOSITORY = "Codertocat/Hello-World"  # the repository of GitHub's sample payloads
SECRET = "relay-bench-webhook-secret"  # a throwaway secret of this benchmark
PORTS = range(8800, 8900)
P99_TARGET_MS = 250.0
BACKENDS = ("sqlite", "postgresql")
RESULT_KEYS = {"sqlite": "webhooks", "postgresql": "webhooks_postgresql"}
SERVER_LOG_ENV = ON_POSTGRES  # set: this process runs against that server (its log)
REPLAYS = 20
# GitHub gives up on a delivery that is not answered within 10 s (and marks it failed); the
# benchmark's client does the same.
GITHUB_TIMEOUT_S = 10.0
# What the Prefect client retries after 2 s, 4 s, 8 s, ... (PrefectHttpxAsyncClient).
RETRY_CODES = frozenset({408, 429, 502, 503})
# A pause after a series' runs are deleted, so the next series does not meet that work.
SETTLE_S = 5.0
SERIES = (
    "same_commit",
    "same_commit_reaped",
    "new_commit",
    "ping",
    "sustained",
    "sustained_reaped",
)
# Every queued delivery must have its run within this many seconds of its 202 (p99).
QUEUE_TO_RUN_TARGET_S = 30.0
# How long the benchmark waits, after a series' last 202, for the runs of its deliveries.
RUN_WAIT_S = 90.0
PHASES = (
    "request",  # the whole ASGI request, until the response starts
    "enqueue",  # Deliveries.enqueue (INSERT ... ON CONFLICT DO NOTHING in the queue)
    # The dispatcher's work (checkout, relay.yaml, creating the run) happens after the answer,
    # outside any request, so it is measured from the outside: 202 -> run created on the server.
)


# -- the receiver's process ------------------------------------------------------------------


def serve_child(config_path: Path) -> None:
    """Serve the receiver with uvicorn in this process, logging phase times per request."""
    import httpx
    import uvicorn
    from prefect.client.orchestration import PrefectClient
    from pydantic import SecretStr

    import deployments.webhooks as receiver_module
    import relay.git as relay_git
    from deployments.webhooks import RepositoryTarget, WebhookSettings, create_app
    from relay.webhooks import Deliveries

    config = json.loads(config_path.read_text())
    settings = WebhookSettings(
        github_secret=SecretStr(config["secret"]),
        repositories={
            name: RepositoryTarget(url=url) for name, url in config["repositories"].items()
        },
        deployment=config["deployment"],
        state_dir=Path(config["state_dir"]),
    )
    record: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
        "bench_record", default=None
    )

    def add(name: str, seconds: float) -> None:
        rec = record.get()
        if rec is not None:
            rec[name] = rec.get(name, 0.0) + seconds

    def timed_sync(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                add(name, time.perf_counter() - t0)

        return wrapper

    def timed_async(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                add(name, time.perf_counter() - t0)

        return wrapper

    original_git = relay_git._git

    def git_logged(args: list[str], cwd: Path | None = None) -> str:
        t0 = time.perf_counter()
        try:
            return original_git(args, cwd)
        finally:
            rec = record.get()
            if rec is not None:
                rec.setdefault("git", []).append([args[0], round(time.perf_counter() - t0, 5)])

    original_send = httpx.AsyncClient.send

    async def send_logged(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Each attempt of the Prefect client (its retries on 429/502/503 included).
        t0 = time.perf_counter()
        outcome: Any = "error"
        try:
            response = await original_send(self, request, *args, **kwargs)
            outcome = response.status_code
            return response
        except Exception as exc:
            outcome = type(exc).__name__
            raise
        finally:
            rec = record.get()
            if rec is not None:
                path = request.url.path.rsplit("/api", 1)[-1]
                rec.setdefault("http", []).append(
                    [request.method, path, outcome, round(time.perf_counter() - t0, 5)]
                )

    # Wrapped in this process only; the receiver's source is unchanged.
    httpx.AsyncClient.send = send_logged
    relay_git._git = git_logged
    relay_git.checkout = timed_sync("checkout", relay_git.checkout)
    receiver_module.load_manifest = timed_sync("manifest", receiver_module.load_manifest)
    Deliveries.enqueue = timed_sync("enqueue", Deliveries.enqueue)
    PrefectClient.read_deployment_by_name = timed_async(
        "read_deployment", PrefectClient.read_deployment_by_name
    )
    PrefectClient.create_flow_run_from_deployment = timed_async(
        "create_run", PrefectClient.create_flow_run_from_deployment
    )

    app = create_app(settings)
    log = Path(config["phase_log"]).open("a", buffering=1, encoding="utf-8")  # noqa: SIM115

    async def timed_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rec: dict[str, Any] = {
            "delivery": headers.get(b"x-github-delivery", b"").decode(),
            "series": headers.get(b"x-bench-series", b"").decode(),
            "at": time.time(),
        }
        token = record.set(rec)
        t0 = time.perf_counter()

        async def send_timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                rec["request"] = time.perf_counter() - t0
                rec["status"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_timed)
        finally:
            record.reset(token)
            if rec["delivery"]:
                log.write(json.dumps(rec) + "\n")

    server = uvicorn.Server(
        uvicorn.Config(
            timed_app,
            host="127.0.0.1",
            port=config["port"],
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
    )
    server.run()  # returns on SIGTERM/SIGINT
    log.close()


@contextmanager
def served(config: dict[str, Any], workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The receiver in a child process; yields its base URL; stops it (by PID) at the end."""
    config_path = workdir / "receiver.json"
    config_path.write_text(json.dumps(config))
    out = (workdir / "receiver.log").open("ab")  # both phases kept
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-child", str(config_path)],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{config['port']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the receiver exited: {_tail(workdir / 'receiver.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the receiver did not answer: {_tail(workdir / 'receiver.log')}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", config["port"], timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        out.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


# -- the application repository --------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def make_shop(path: Path) -> str:
    """A git copy of examples/shop with `branch: develop` on dev; the commit of develop."""
    shutil.copytree(SHOP, path, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    manifest = path / "relay.yaml"
    text = manifest.read_text()
    if "    branch: develop\n" not in text:
        text = text.replace("  dev:\n", "  dev:\n    branch: develop\n", 1)
        manifest.write_text(text)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.email", "relay-bench@example.com")
    git(path, "config", "user.name", "Relay bench")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "shop")
    git(path, "checkout", "--quiet", "-b", "develop")
    (path / "services" / "orders" / "CHANGES").write_text("faster checkout\n")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "orders: faster checkout")
    return git(path, "rev-parse", "HEAD")


def push_new_commit(path: Path, n: int) -> str:
    """A new commit on develop (a one-line change in orders), as a developer's push."""
    (path / "services" / "orders" / "CHANGES").write_text(f"change {n}\n")
    git(path, "commit", "--quiet", "-am", f"orders: change {n}")
    return git(path, "rev-parse", "HEAD")


# -- deliveries -------------------------------------------------------------------------------


def push_payload(after: str) -> dict[str, Any]:
    """GitHub's real new-branch push, moved to develop and a commit of the shop copy."""
    payload = json.loads((PAYLOADS / "push.with-new-branch.payload.json").read_text())
    payload.update(ref="refs/heads/develop", after=after)
    payload["head_commit"]["id"] = after
    return payload


def ping_payload() -> dict[str, Any]:
    return json.loads((PAYLOADS / "ping.payload.json").read_text())


def deliver(
    port: int, event: str, body: bytes, delivery: str, series: str
) -> tuple[float, int, dict[str, Any]]:
    """(seconds from sending to the answer read, status, JSON answer); a new connection each.

    Status 0: no answer within GitHub's own delivery timeout (GitHub then marks the delivery
    failed and does not retry it by itself)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/relay-bench",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-Bench-Series": series,
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GITHUB_TIMEOUT_S)
    t0 = time.perf_counter()
    try:
        conn.request("POST", "/github", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        status = response.status
    except OSError as exc:  # socket.timeout included
        return time.perf_counter() - t0, 0, {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    try:
        answer = json.loads(data)
    except ValueError:
        answer = {"raw": data[:200].decode(errors="replace")}
    return elapsed, status, answer


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def stats_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = [s * 1e3 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 2),
        "p95": round(pct(ms, 95), 2),
        "p99": round(pct(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def count(items: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return out


# -- Prefect ----------------------------------------------------------------------------------


class Prefect:
    """The benchmark's work pool (no worker) and deployments; removes all of it in `close`."""

    def __init__(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        self._get_client = get_client
        self.pool = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
        self.deployments: dict[str, uuid.UUID] = {}
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=self.pool, type="process"))

    def deployment(self, label: str) -> str:
        """A new deployment of flows/release.py:release in the pool; its flow/deployment name."""
        from flows.release import release

        name = f"bench-webhooks-{label}-{uuid.uuid4().hex[:6]}"
        self.deployments[name] = release.to_deployment(name=name, work_pool_name=self.pool).apply()
        return f"release/{name}"

    def runs(self, name: str) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

        deployment_id = self.deployments[name.split("/", 1)[1]]
        found: list[Any] = []
        with self._get_client(sync_client=True) as client:
            for _ in range(1000):  # bounded: 200 per page
                page = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
                    ),
                    limit=200,
                    offset=len(found),
                )
                found.extend(page)
                if len(page) < 200:
                    break
        return found

    def delete_runs(self, name: str) -> int:
        """Delete every run of deployment `name`; how many were deleted."""
        deleted = 0
        with self._get_client(sync_client=True) as client:
            for _ in range(20):  # bounded: each round deletes what is listed
                runs = self.runs(name)
                if not runs:
                    break
                for run in runs:
                    try:
                        client.delete_flow_run(run.id)
                        deleted += 1
                    except Exception as exc:  # noqa: BLE001 - keep cleaning up
                        print(f"cleanup: flow run {run.id}: {exc}", file=sys.stderr)
        return deleted

    def close(self) -> dict[str, int]:
        """Delete every run of the benchmark's deployments, the deployments and the pool."""
        deleted = {"flow_runs": 0, "deployments": 0, "work_pools": 0}
        for name in list(self.deployments):
            deleted["flow_runs"] += self.delete_runs(f"release/{name}")
            with self._get_client(sync_client=True) as client:
                client.delete_deployment(self.deployments.pop(name))
            deleted["deployments"] += 1
        with self._get_client(sync_client=True) as client:
            client.delete_work_pool(self.pool)
        deleted["work_pools"] += 1
        return deleted


class ServerLog:
    """Counts the Prefect server's database-contention errors in a window (from its log)."""

    PATTERNS = {
        "state_validation_errors": "Encountered error during state validation",
        "request_exceptions": "Encountered exception in request",
        "database_locked": "database is locked",
    }

    def __init__(self) -> None:
        from relay.settings import relay_home

        self.path = Path(os.environ.get(SERVER_LOG_ENV) or relay_home() / "logs" / "prefect.log")

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return -1

    def since(self, offset: int) -> dict[str, int] | None:
        if offset < 0 or not self.path.exists():
            return None
        with self.path.open("rb") as f:
            f.seek(offset)
            text = f.read(200_000_000).decode(errors="replace")
        return {key: text.count(pattern) for key, pattern in self.PATTERNS.items()}


class Reaper:
    """Checks and deletes each accepted run right after its 202, in a thread of its own.

    Runs that stay SCHEDULED turn Late after 15 s, and the server's late-runs service then marks
    up to 400 of them at once, in concurrent transactions on its SQLite database, which makes
    the API answer 503 to the receiver. With the reaper, no run of the series lives long enough
    to turn Late, which is what a worker that picks runs up promptly would also achieve."""

    def __init__(self, prefect: Prefect, deployment: str, port: int) -> None:
        self.port = port
        self.deployment_id = prefect.deployments[deployment.split("/", 1)[1]]
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.verified = 0
        self.problems: list[str] = []
        self.thread = threading.Thread(target=self._loop, args=(prefect,), daemon=True)
        self.thread.start()

    def add(self, answer: dict[str, Any]) -> None:
        if answer.get("status") == 202:
            self.queue.put(("", answer["delivery"]))

    def _loop(self, prefect: Prefect) -> None:
        with prefect._get_client(sync_client=True) as client:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                _, delivery = item
                run_id = started_run(self.port, delivery)
                if run_id is None:
                    self.problems.append(f"{delivery}: no run within {RUN_WAIT_S:g} s")
                    continue
                try:
                    run = client.read_flow_run(uuid.UUID(run_id))
                    if run.deployment_id != self.deployment_id:
                        self.problems.append(f"{run_id}: another deployment")
                    elif run.idempotency_key != f"github:{delivery}":
                        self.problems.append(f"{run_id}: key {run.idempotency_key}")
                    else:
                        self.verified += 1
                    client.delete_flow_run(run.id)
                except Exception as exc:  # noqa: BLE001 - a missing run is a finding
                    self.problems.append(f"{run_id}: {type(exc).__name__}: {exc}")

    def close(self, limit_s: float = 300.0) -> dict[str, Any]:
        self.queue.put(None)
        self.thread.join(timeout=limit_s)
        return {"verified_and_deleted": self.verified, "problems": self.problems[:20]}


# -- the receiver's log -----------------------------------------------------------------------


def records(log: Path, series: str) -> list[dict[str, Any]]:
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("series") == series:
                out.append(rec)
    return out


def wait_idle(log: Path, series: str, expected: int, limit_s: float = 240.0) -> bool:
    """Wait (bounded) until the receiver has finished `expected` requests of `series`: a
    request the client gave up on may still be retrying against Prefect and create a run."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if len(records(log, series)) >= expected:
            return True
        time.sleep(0.5)
    return False


def retried(rec: dict[str, Any]) -> bool:
    """Whether a Prefect API attempt of this delivery failed and was retried (or failed)."""
    return any(
        not isinstance(status, int) or status in RETRY_CODES
        for _, _, status, _ in rec.get("http", [])
    )


def phases_of(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median (and p95, max) per phase of the deliveries' records, and the slowest ones."""
    out: dict[str, Any] = {"n": len(recs), "statuses": count([r.get("status") for r in recs])}
    for phase in PHASES:
        values = [r[phase] for r in recs if phase in r]
        if values:
            out[phase] = stats_ms(values)
    if any("environment" in r for r in recs):
        out["env_overhead"] = stats_ms(
            [
                r["environment"] - r.get("checkout", 0.0) - r.get("manifest", 0.0)
                for r in recs
                if "environment" in r
            ]
        )
    if any("start_run" in r for r in recs):
        out["client_overhead"] = stats_ms(
            [
                r["start_run"] - r.get("read_deployment", 0.0) - r.get("create_run", 0.0)
                for r in recs
                if "start_run" in r
            ]
        )
        out["request_without_prefect_retry"] = stats_ms(
            [r["request"] for r in recs if "request" in r and not retried(r)]
        )
    attempts = [a for r in recs for a in r.get("http", [])]
    if attempts:
        out["prefect_api"] = {
            "attempts": len(attempts),
            "by_request_and_status": count([f"{m} {_route(p)} {s}" for m, p, s, _ in attempts]),
            "deliveries_with_a_retry": sum(1 for r in recs if retried(r)),
            "retried_deliveries_started_at_s": [
                round(r["at"] - min(x["at"] for x in recs), 1) for r in recs if retried(r)
            ],
            "retries_per_delivery": count(
                [
                    sum(
                        1
                        for _, _, s, _ in r.get("http", [])
                        if not isinstance(s, int) or s in RETRY_CODES
                    )
                    for r in recs
                    if "start_run" in r
                ]
            ),
        }
    git_counts: dict[str, int] = {}
    git_time: dict[str, list[float]] = {}
    for rec in recs:
        per: dict[str, float] = {}
        for name, seconds in rec.get("git", []):
            per[name] = per.get(name, 0.0) + seconds
            git_counts[name] = git_counts.get(name, 0) + 1
        for name, seconds in per.items():
            git_time.setdefault(name, []).append(seconds)
    if recs and git_counts:
        out["git_commands_per_delivery"] = {
            k: round(v / len(recs), 2) for k, v in git_counts.items()
        }
        out["git_ms_median"] = {
            k: round(statistics.median(v) * 1e3, 2) for k, v in git_time.items()
        }
    slowest = sorted((r for r in recs if "request" in r), key=lambda r: -r["request"])[:5]
    out["slowest"] = [
        {
            k: (round(v * 1e3, 1) if isinstance(v, float) else v)
            for k, v in r.items()
            if k not in ("git", "http", "at")
        }
        | {"git": [[n, round(s * 1e3, 1)] for n, s in r.get("git", [])]}
        | {"http": [[m, _route(p), st, round(s * 1e3, 1)] for m, p, st, s in r.get("http", [])]}
        for r in slowest
    ]
    return out


def _route(path: str) -> str:
    parts = path.split("/")
    return "/".join("{id}" if len(p) == 36 and p.count("-") == 4 else p for p in parts)


# -- the measurements -------------------------------------------------------------------------


def sequential(
    port: int,
    series: str,
    n: int,
    make_body: Any,
    event: str = "push",
    on_answer: Any = None,
) -> dict[str, Any]:
    """`n` deliveries one at a time, each with its own delivery id."""
    answers: list[dict[str, Any]] = []
    for i in range(n):
        body = json.dumps(make_body(i)).encode()
        delivery = str(uuid.uuid4())
        elapsed, status, answer = deliver(port, event, body, delivery, series)
        answers.append(
            {
                **answer,
                "delivery": delivery,
                "status": status,
                "latency": elapsed,
                "answered_at": time.time(),
            }
        )
        if on_answer is not None:
            on_answer(answers[-1])
    return summarize_answers(answers)


def summarize_answers(answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "latency_ms": stats_ms([a["latency"] for a in answers]),
        "statuses": count([a["status"] for a in answers]),
        "answers": answers,
    }


def delivery_status(port: int, delivery: str) -> dict[str, Any]:
    """The receiver's status of a delivery (GET /deliveries/github/<id>)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GITHUB_TIMEOUT_S)
    try:
        conn.request("GET", f"/deliveries/github/{delivery}")
        response = conn.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        return body if response.status == 200 else {"state": f"http {response.status}"}
    except (OSError, ValueError) as exc:
        return {"state": f"error {type(exc).__name__}"}
    finally:
        conn.close()


def started_run(port: int, delivery: str, limit_s: float = RUN_WAIT_S) -> str | None:
    """The delivery's flow run id once its status says started; None if it does not within
    `limit_s` (or it was ignored or failed)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = delivery_status(port, delivery)
        if status.get("state") == "started":
            return str(status["flow_run_id"])
        if status.get("state") in ("ignored", "failed"):
            return None
        time.sleep(0.2)
    return None


def await_runs(
    prefect: Prefect, deployment: str, answers: list[dict[str, Any]], port: int
) -> dict[str, Any]:
    """Wait (at most RUN_WAIT_S) until every delivery answered 202 has its run on the server,
    matched by idempotency key; set each answer's flow_run_id; then how long 202 -> run took
    (the run's `created` on the server minus the moment the client read the 202), how many
    were lost (no run) or doubled (two runs), and the states the status endpoint reports."""
    accepted = [a for a in answers if a["status"] == 202]
    wanted = {f"github:{a['delivery']}" for a in accepted}
    started = time.monotonic()
    deadline = started + RUN_WAIT_S
    while True:
        runs = prefect.runs(deployment)
        by_key: dict[str, list[Any]] = {}
        for run in runs:
            by_key.setdefault(run.idempotency_key or "", []).append(run)
        if wanted <= set(by_key) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    waits: list[float] = []
    for a in accepted:
        found = by_key.get(f"github:{a['delivery']}")
        if found:
            first = min(found, key=lambda r: r.created)
            a["flow_run_id"] = str(first.id)
            waits.append(max(0.0, first.created.timestamp() - a["answered_at"]))
    lost = sum(1 for key in wanted if key not in by_key)
    doubled = sum(1 for key in wanted if len(by_key.get(key, [])) > 1)
    to_run = stats_ms(waits)
    return {
        "accepted": len(accepted),
        "with_run": len(accepted) - lost,
        "lost": lost,
        "doubled": doubled,
        "queue_to_run_ms": to_run,
        "target_p99_s": QUEUE_TO_RUN_TARGET_S,
        "met": bool(
            lost == 0
            and doubled == 0
            and (not to_run or to_run["p99"] <= QUEUE_TO_RUN_TARGET_S * 1e3)
        ),
        "waited_s": round(time.monotonic() - started, 1),
        "states": count([delivery_status(port, a["delivery"]).get("state") for a in accepted]),
    }


def check_runs(
    prefect: Prefect, deployment: str, answers: list[dict[str, Any]], server_202: int
) -> dict[str, Any]:
    """The deployment's runs on the server against what the deliveries were told; each
    accepted delivery's run is the one with its idempotency key (`await_runs` sets it)."""
    runs = prefect.runs(deployment)
    on_server = {str(r.id): r for r in runs}
    accepted = [a for a in answers if a["status"] == 202]
    returned = [a.get("flow_run_id") for a in accepted]
    keys = [r.idempotency_key for r in runs]
    sent_keys = {f"github:{a['delivery']}" for a in answers}
    missing = [i for i in returned if i not in on_server]
    mismatched = [
        a
        for a in accepted
        if a["flow_run_id"] in on_server
        and on_server[a["flow_run_id"]].idempotency_key != f"github:{a['delivery']}"
    ]
    return {
        "deliveries": len(answers),
        "answered_202": len(accepted),
        "receiver_202": server_202,  # what the receiver answered, also after the client gave up
        "runs_on_server": len(runs),
        "distinct_returned_ids": len(set(returned)),
        "returned_missing_on_server": len(missing),
        "runs_not_returned_to_client": len(set(on_server) - set(returned)),
        "duplicate_idempotency_keys": len(keys) - len(set(keys)),
        "runs_of_unknown_deliveries": sum(1 for k in keys if k not in sent_keys),
        "key_mismatches": len(mismatched),
        "none_lost_none_doubled": (
            len(runs) == len(answers) == len(accepted) == len(set(returned))
            and not missing
            and not mismatched
            and len(keys) == len(set(keys))
        ),
        "no_double_no_phantom": (
            len(keys) == len(set(keys))
            and all(k in sent_keys for k in keys)
            and len(runs) == server_202
            and not missing
        ),
    }


def sustained(
    port: int,
    body: bytes,
    rate: float,
    seconds: float,
    threads: int,
    series: str = "sustained",
    on_answer: Any = None,
) -> dict[str, Any]:
    """Deliveries due at i / rate, sent by `threads` client threads (each takes the next one)."""
    total = int(round(rate * seconds))
    start = time.perf_counter() + 0.5
    results: list[dict[str, Any] | None] = [None] * total
    next_index = [0]
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next_index[0]
                if i >= total:
                    return
                next_index[0] += 1
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            delivery = str(uuid.uuid4())
            elapsed, status, answer = deliver(port, "push", body, delivery, series)
            results[i] = {
                "delivery": delivery,
                "status": status,
                "answered_at": time.time(),
                "reason": answer.get("reason") or answer.get("error"),
                "lag": max(0.0, sent - due),
                "sent": sent - start,
                "done": sent + elapsed - start,
                "latency": elapsed,
            }
            if on_answer is not None:
                on_answer(results[i])

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + total * (GITHUB_TIMEOUT_S + 1) / threads + 30)
    done = [r for r in results if r is not None]
    last_done = max(r["done"] for r in done)
    return {
        "deliveries": total,
        "answered": len(done),
        "statuses": count([r["status"] for r in done]),
        "offered_rate": rate,
        "seconds": seconds,
        "threads": threads,
        "send_rate": _rate([r["sent"] for r in done]),
        "accepted_rate": _rate([r["done"] for r in done if r["status"] == 202]),
        "wall_s": round(last_done, 2),
        "latency_ms": stats_ms([r["latency"] for r in done]),
        "schedule_lag_ms": stats_ms([r["lag"] for r in done]),
        "answers": done,
    }


def _rate(moments: list[float]) -> float | None:
    """Events per second between the first and the last of `moments`."""
    if len(moments) < 2 or max(moments) <= min(moments):
        return None
    return round((len(moments) - 1) / (max(moments) - min(moments)), 2)


def replay(port: int, body: bytes, deliveries: list[str], threads: int) -> dict[str, Any]:
    """The same deliveries again (same ids), `threads` at a time."""
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    todo = list(deliveries)

    def client() -> None:
        while True:
            with lock:
                if not todo:
                    return
                delivery = todo.pop()
            _, status, answer = deliver(port, "push", body, delivery, "replay")
            with lock:
                answers.append((status, str(answer.get("reason", answer.get("status")))))

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=len(deliveries) * (GITHUB_TIMEOUT_S + 1) + 10)
    return {
        "sent": len(deliveries),
        "statuses": count([s for s, _ in answers]),
        "reasons": count([r for _, r in answers]),
    }


# -- output -----------------------------------------------------------------------------------


def _row(label: str, s: dict[str, float], extra: str = "") -> str:
    if not s:
        return f"| {label} | - | - | - | - | - | {extra} |"
    return (
        f"| {label} | {s['n']} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} "
        f"| {s['max']:.1f} | {extra} |"
    )


def _ok(check: dict[str, Any]) -> str:
    return "ok" if check["none_lost_none_doubled"] else "MISMATCH"


def print_table(result: dict[str, Any]) -> None:
    lat = result["latency"]
    sus = result["sustained"]
    phases = result["phases"]

    def quiet(series: str) -> dict[str, float]:
        return phases.get(series, {}).get("request_without_prefect_retry", {})

    def verdict(s: dict[str, float]) -> str:
        if s["p99"] <= P99_TARGET_MS:
            return f"meets p99 <= {P99_TARGET_MS:.0f}"
        return f"MISSES p99 <= {P99_TARGET_MS:.0f} ({s['p99'] / P99_TARGET_MS:.1f}x)"

    print()
    print("| series: ms from sending to the answer | n | p50 | p95 | p99 | max | notes |")
    print("|---|---|---|---|---|---|---|")
    same = lat["same_commit"]
    print(
        _row(
            "1. push, one commit, one at a time",
            same["latency_ms"],
            f"{verdict(same['latency_ms'])}; {same['statuses']}; runs {_ok(same['check'])}",
        )
    )
    print(_row("   same, receiver time w/o Prefect retry", quiet("same_commit"), "server side"))
    reaped = lat.get("same_commit_reaped")
    if reaped:
        print(
            _row(
                "   same, each run deleted after its 202",
                reaped["latency_ms"],
                f"{verdict(reaped['latency_ms'])}; {reaped['statuses']}; "
                f"verified {reaped['reaper']['verified_and_deleted']}",
            )
        )
    new = lat.get("new_commit")
    if new:
        print(
            _row(
                "   push, a new commit each",
                new["latency_ms"],
                f"{new['statuses']}; runs {_ok(new['check'])}",
            )
        )
    print(
        _row(
            "   ping (no git/SQLite/Prefect)",
            lat["ping"]["latency_ms"],
            f"{lat['ping']['statuses']}",
        )
    )
    print(
        _row(
            f"2. push at {sus['offered_rate']:g}/s x {sus['seconds']:g} s, "
            f"{sus['threads']} threads",
            sus["latency_ms"],
            f"{sus['statuses']}; sent {sus['send_rate']}/s",
        )
    )
    print(_row("   same, receiver time w/o Prefect retry", quiet("sustained"), "server side"))
    print(_row("   how late sends were", sus["schedule_lag_ms"], "client threads all waiting"))
    print()
    print("| series: ms from the 202 to the run created | n | p50 | p95 | p99 | max | notes |")
    print("|---|---|---|---|---|---|---|")
    for label, part in (
        ("1. push, one commit, one at a time", same),
        ("   push, a new commit each", new or {}),
        ("2. push at the sustained rate", sus),
    ):
        r = part.get("runs")
        if r:
            verdict_run = "meets" if r["met"] else "MISSES"
            print(
                _row(
                    label,
                    r["queue_to_run_ms"],
                    f"{verdict_run} p99 <= {r['target_p99_s']:g} s; lost {r['lost']}, "
                    f"doubled {r['doubled']} of {r['accepted']}; states {r['states']}",
                )
            )
    sr = result.get("sustained_reaped")
    if sr:
        print(
            _row(
                "   same rate, each run deleted after its 202",
                sr["latency_ms"],
                f"{sr['statuses']}; sent {sr['send_rate']}/s; "
                f"verified {sr['reaper']['verified_and_deleted']}",
            )
        )

    print()
    series = [k for k in SERIES if k in phases]
    print("| receiver phase, median ms | " + " | ".join(series) + " |")
    print("|---|" + "---|" * len(series))
    for phase in (*PHASES, "env_overhead", "client_overhead"):
        cells = []
        for name in series:
            s = phases[name].get(phase)
            cells.append(f"{s['p50']:.1f}" if s else "-")
        if any(c != "-" for c in cells):
            print(f"| {phase} | " + " | ".join(cells) + " |")
    cells = []
    for name in series:
        api = phases[name].get("prefect_api")
        cells.append(f"{api['deliveries_with_a_retry']}/{phases[name]['n']}" if api else "-")
    print("| deliveries with a Prefect 503 (retry after >= 2 s) | " + " | ".join(cells) + " |")
    cells = []
    for name in series:
        api = phases[name].get("prefect_api")
        at = api["retried_deliveries_started_at_s"] if api else []
        cells.append(f"{min(at):.0f} s" if at else "-")
    print("| first such delivery, after the series began | " + " | ".join(cells) + " |")
    cells = []
    for name in series:
        g = phases[name].get("git_commands_per_delivery", {})
        cells.append(" ".join(f"{k}x{v:g}" for k, v in g.items()) or "-")
    print("| git commands per delivery | " + " | ".join(cells) + " |")

    check = sus["check"]
    rep = sus["replay"]
    print()
    print("| 2. sustained (runs kept): counts | value |")
    print("|---|---|")
    print(
        "| deliveries sent / 202 seen by the client / 202 by the receiver (also after a timeout) "
        f"| {check['deliveries']} / {check['answered_202']} / {check['receiver_202']} |"
    )
    print(f"| client answers | {sus['statuses']} (0 = no answer within {GITHUB_TIMEOUT_S:g} s) |")
    print(f"| flow runs on the server for the deployment | {check['runs_on_server']} |")
    print(
        f"| returned ids missing on server / runs the client never heard of | "
        f"{check['returned_missing_on_server']} / {check['runs_not_returned_to_client']} |"
    )
    print(
        f"| duplicate idempotency keys / runs of unknown deliveries | "
        f"{check['duplicate_idempotency_keys']} / {check['runs_of_unknown_deliveries']} |"
    )
    print(
        f"| send rate / 202 rate | {sus['send_rate']} / {sus['accepted_rate']} per s "
        f"(offered {sus['offered_rate']:g}) |"
    )
    print(f"| replay of {rep['sent']} (same ids) | {rep['statuses']} {rep['reasons']} |")
    print(f"| flow runs after replay (new) | {rep['runs_after']} ({rep['new_runs']}) |")
    print(
        "| none lost, none doubled (runs == deliveries == 202s) | "
        f"{check['none_lost_none_doubled']} |"
    )
    print(
        f"| no doubles, no phantoms (runs == receiver's 202s) | {check['no_double_no_phantom']} |"
    )
    if sr:
        print(
            f"| runs reaped: 202s / verified+deleted / left (202 after timeout) / problems | "
            f"{sr['statuses'].get('202', 0)} / {sr['reaper']['verified_and_deleted']} / "
            f"{sr['left_on_server']} / {len(sr['reaper']['problems'])} |"
        )
    server = result.get("prefect_server_errors")
    if server:
        print()
        print("| Prefect server log, during | " + " | ".join(server) + " |")
        print("|---|" + "---|" * len(server))
        for key in ServerLog.PATTERNS:
            print(
                f"| {key} | "
                + " | ".join(str((v or {}).get(key, "-")) for v in server.values())
                + " |"
            )


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200, help="sequential pushes")
    parser.add_argument(
        "--new-commit-deliveries",
        type=int,
        default=50,
        help="sequential pushes of a new commit each (0: skip)",
    )
    parser.add_argument("--pings", type=int, default=50, help="sequential pings")
    parser.add_argument("--rate", type=float, default=20.0, help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the rate is held")
    parser.add_argument("--threads", type=int, default=16, help="client threads under load")
    parser.add_argument(
        "--reaped",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run parts 1 and 2 with each run checked and deleted once its delivery started "
        "(shows whether runs left SCHEDULED, which turn Late, cause the 503s)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="the Prefect server's database: the stack's SQLite server, or a PostgreSQL-backed "
        "server this benchmark starts (bench/postgres.py); results under 'webhooks' or "
        "'webhooks_postgresql'",
    )
    parser.add_argument("--serve-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_child is not None:
        serve_child(args.serve_child)
        return
    if args.backend == "postgresql" and os.environ.get(SERVER_LOG_ENV) is None:
        sys.exit(rerun_on_postgres(__file__))
    if not 1 <= args.deliveries <= 5000:
        parser.error("--deliveries must be within 1..5000")
    if not 0 <= args.new_commit_deliveries <= 1000 or not 1 <= args.pings <= 5000:
        parser.error("--new-commit-deliveries within 0..1000, --pings within 1..5000")
    if not 0 < args.rate <= 500 or not 0 < args.seconds <= 600 or not 1 <= args.threads <= 64:
        parser.error("--rate within (0, 500], --seconds within (0, 600], --threads 1..64")
    if args.rate * args.seconds < REPLAYS:
        parser.error(f"--rate x --seconds must be at least {REPLAYS} (the replays)")
    if not PAYLOADS.is_dir():
        sys.exit(f"GitHub's sample payloads are not at {PAYLOADS}")
    if not devstack.status().all_running:
        sys.exit("the local stack is not running; use `make bench` (it starts the stack)")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-bench-webhooks-") as tmp:
        work = Path(tmp)
        shop = work / "shop"
        develop = make_shop(shop)
        prefect = Prefect()
        cleanup: dict[str, Any] = {}
        try:
            result = run(args, work, shop, develop, prefect)
        finally:
            try:
                cleanup = prefect.close()
            except Exception as exc:  # noqa: BLE001 - report, do not hide the first error
                print(f"cleanup failed: {exc}; work pool {prefect.pool}", file=sys.stderr)
        print(f"cleanup: deleted {cleanup}")
    runtime = time.monotonic() - started
    result["runtime_s"] = round(runtime, 1)
    result["cleanup"] = cleanup
    print_table(result)
    for part in result["latency"].values():
        part.pop("answers", None)
    result["sustained"].pop("answers", None)
    result.get("sustained_reaped", {}).pop("answers", None)
    result["backend"] = args.backend
    key = RESULT_KEYS[args.backend]
    written = write_results(key, result)
    print(f"\nruntime {runtime:.1f} s; results merged into {written} under {key!r}")
    checks = [result["latency"]["same_commit"]["check"], result["sustained"]["check"]]
    runs = [result["latency"]["same_commit"]["runs"], result["sustained"]["runs"]]
    if (
        not all(c["no_double_no_phantom"] for c in checks)
        or any(r["lost"] or r["doubled"] for r in runs)
        or result["sustained"]["replay"]["new_runs"]
    ):
        sys.exit(
            "a check failed: a queued delivery got no run or two, a run exists for no "
            "delivery, or a replay made one"
        )


def run(
    args: argparse.Namespace, work: Path, shop: Path, develop: str, prefect: Prefect
) -> dict[str, Any]:
    latency_deployment = prefect.deployment("latency")
    load_deployment = prefect.deployment("load")
    phase_log = work / "phases.jsonl"
    server_log = ServerLog()
    config = {
        "secret": SECRET,
        "repositories": {REPOSITORY: str(shop)},
        "deployment": latency_deployment,
        "state_dir": str(work / "state-latency"),
        "phase_log": str(phase_log),
        "port": free_port(),
    }
    push_body = push_payload(develop)
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "python": pyplatform.python_version(),
            "platform": pyplatform.platform(),
        },
        "config": {
            "deliveries": args.deliveries,
            "new_commit_deliveries": args.new_commit_deliveries,
            "pings": args.pings,
            "rate": args.rate,
            "seconds": args.seconds,
            "threads": args.threads,
            "reaped_variants": args.reaped,
            "replays": REPLAYS,
            "p99_target_ms": P99_TARGET_MS,
            "queue_to_run_target_s": QUEUE_TO_RUN_TARGET_S,
            "client_timeout_s": GITHUB_TIMEOUT_S,
            "receiver": "uvicorn, one process (a child of the benchmark), answering 202 once "
            "queued (SQLite queue in its state dir), its dispatcher creating the runs; a new "
            "connection per delivery; runs stay SCHEDULED (pool without worker)",
        },
        "latency": {},
        "phases": {},
        "prefect_server_errors": {},
    }

    def receiver_202(*series: str) -> int:
        return sum(1 for s in series for r in records(phase_log, s) if r.get("status") == 202)

    # 1. latency, one delivery at a time.
    port = config["port"]
    with served(config, work):
        warm = sequential(port, "warmup", 3, lambda i: push_body)  # clone, imports, connections
        print(f"warm-up: {warm['statuses']} {warm['latency_ms']}")
        mark = server_log.mark()
        same = sequential(port, "same_commit", args.deliveries, lambda i: push_body)
        print(f"1. push, one commit: {same['statuses']} {same['latency_ms']}")
        wait_idle(phase_log, "same_commit", args.deliveries)
        same["runs"] = await_runs(
            prefect, latency_deployment, warm["answers"] + same["answers"], port
        )
        print(f"   202 -> run: {same['runs']}")
        result["prefect_server_errors"]["same_commit"] = server_log.since(mark)
        same["check"] = check_runs(
            prefect,
            latency_deployment,
            warm["answers"] + same["answers"],
            receiver_202("warmup", "same_commit"),
        )
        print(f"   runs: {same['check']}")
        # Remove them before the next series, which would otherwise meet their Late storm.
        t0 = time.perf_counter()
        same["deleted_runs"] = prefect.delete_runs(latency_deployment)
        same["delete_s"] = round(time.perf_counter() - t0, 1)
        result["latency"]["same_commit"] = same
        time.sleep(SETTLE_S)
        pings = sequential(port, "ping", args.pings, lambda i: ping_payload(), event="ping")
        result["latency"]["ping"] = pings
        print(f"   ping: {pings['statuses']} {pings['latency_ms']}")
        if args.new_commit_deliveries:
            new = sequential(
                port,
                "new_commit",
                args.new_commit_deliveries,
                lambda i: push_payload(push_new_commit(shop, i)),
            )
            wait_idle(phase_log, "new_commit", args.new_commit_deliveries)
            new["runs"] = await_runs(prefect, latency_deployment, new["answers"], port)
            new["check"] = check_runs(
                prefect, latency_deployment, new["answers"], receiver_202("new_commit")
            )
            print(f"   push, a new commit each: {new['statuses']} {new['latency_ms']}")
            new["deleted_runs"] = prefect.delete_runs(latency_deployment)
            result["latency"]["new_commit"] = new
            time.sleep(SETTLE_S)
        if args.reaped:
            reaper = Reaper(prefect, latency_deployment, port)
            mark = server_log.mark()
            reaped = sequential(
                port,
                "same_commit_reaped",
                args.deliveries,
                lambda i: push_body,
                on_answer=reaper.add,
            )
            wait_idle(phase_log, "same_commit_reaped", args.deliveries)
            reaped["reaper"] = reaper.close()
            result["prefect_server_errors"]["same_commit_reaped"] = server_log.since(mark)
            reaped["left_on_server"] = prefect.delete_runs(latency_deployment)
            print(f"   push, one commit, runs reaped: {reaped['statuses']} {reaped['latency_ms']}")
            print(f"   reaper: {reaped['reaper']}, left {reaped['left_on_server']}")
            result["latency"]["same_commit_reaped"] = reaped
            time.sleep(SETTLE_S)

    # 2. sustained rate: a fresh receiver (own deliveries database) over the load deployment.
    config.update(deployment=load_deployment, state_dir=str(work / "state-load"), port=free_port())
    port = config["port"]
    body = json.dumps(push_body).encode()
    with served(config, work):
        warm_load = sequential(port, "warmup-load", 1, lambda i: push_body)
        started_run(port, warm_load["answers"][0]["delivery"])  # its run comes after the 202
        prefect.delete_runs(load_deployment)  # only the deliveries below are counted
        mark = server_log.mark()
        load = sustained(port, body, args.rate, args.seconds, args.threads)
        print(
            f"2. sustained: {load['statuses']} send {load['send_rate']}/s, "
            f"latency {load['latency_ms']}, lag {load['schedule_lag_ms']}"
        )
        load["receiver_idle_before_count"] = wait_idle(phase_log, "sustained", load["deliveries"])
        load["runs"] = await_runs(prefect, load_deployment, load["answers"], port)
        print(f"   202 -> run: {load['runs']}")
        result["prefect_server_errors"]["sustained"] = server_log.since(mark)
        load["check"] = check_runs(
            prefect, load_deployment, load["answers"], receiver_202("sustained")
        )
        print(f"   runs: {load['check']}")
        accepted = [a["delivery"] for a in load["answers"] if a["status"] == 202]
        step = max(1, len(accepted) // REPLAYS)
        replayed = accepted[::step][:REPLAYS]
        again = replay(port, body, replayed, args.threads)
        wait_idle(phase_log, "replay", len(replayed))
        time.sleep(2)  # a replay wrongly queued would have its run by now (the dispatcher polls)
        again["runs_after"] = len(prefect.runs(load_deployment))
        again["new_runs"] = again["runs_after"] - load["check"]["runs_on_server"]
        load["replay"] = again
        print(f"   replay: {again}")
        result["sustained"] = load
        if args.reaped:
            prefect.delete_runs(load_deployment)
            time.sleep(SETTLE_S)
            reaper = Reaper(prefect, load_deployment, port)
            mark = server_log.mark()
            reaped_load = sustained(
                port,
                body,
                args.rate,
                args.seconds,
                args.threads,
                series="sustained_reaped",
                on_answer=reaper.add,
            )
            wait_idle(phase_log, "sustained_reaped", reaped_load["deliveries"])
            reaped_load["reaper"] = reaper.close()
            result["prefect_server_errors"]["sustained_reaped"] = server_log.since(mark)
            reaped_load["left_on_server"] = prefect.delete_runs(load_deployment)
            reaped_load["receiver_202"] = receiver_202("sustained_reaped")
            print(
                f"   sustained, runs reaped: {reaped_load['statuses']} send "
                f"{reaped_load['send_rate']}/s, latency {reaped_load['latency_ms']}, "
                f"reaper {reaped_load['reaper']}, left {reaped_load['left_on_server']}"
            )
            result["sustained_reaped"] = reaped_load

    for series in SERIES:
        recs = records(phase_log, series)
        if recs:
            result["phases"][series] = phases_of(recs)
    return result


if __name__ == "__main__":
    main()
