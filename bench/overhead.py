"""Orchestration overhead: a pipeline of no-op commands as Prefect tasks vs. the commands alone.

For each Prefect server backend (the stack's SQLite server; a PostgreSQL-backed server this
benchmark starts itself, on Debian's `postgresql`), in a child process pointed at that server
(Prefect binds its API URL at import):
  - direct: STAGES commands (`true`) run one after the other, no Prefect;
  - relay:  the same commands as STAGES sync tasks in one async flow that holds one Prefect
            client for them (`flows.client.one_client_for_tasks`): Relay's form;
  - mixed:  the same without the shared client (each sync task opens its own);
  - sync:   the same sync tasks in one sync flow (Relay's form before this benchmark);
  - async:  the same as async tasks (asyncio subprocesses) in one async flow;
  - sync_nohb: the sync form with the flow-run heartbeat off
    (`temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})`): the sync flow engine
    joins its heartbeat thread on exit, which sleeps in 1 s steps (prefect/flow_engine.py
    `_send_heartbeats`); the async engine does not join it;
  - realistic: STAGES stages of WORK seconds each (a `sleep`), in every form: the overhead as
    a fraction of real work (target <= 5 %), and per task (target <= 50 ms).
Each form runs RUNS times; medians are reported. Ratios are within one run of this script.

The PostgreSQL cluster and its Prefect server come from bench/postgres.py (a temporary
directory, both stopped by PID at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = 10
# Seconds of quiet before each timed run. Back to back, a run met the SQLite server still
# writing the previous run's task events: "database is locked", 503, and the client's 2 s
# back-off (PrefectHQ/prefect#18934), for whichever form came right after a quick one. Each
# form is measured on an idle server here; bench/webhooks.py measures a server under load.
SETTLE = 1.0
WORK = 0.3  # seconds of real work per stage of the "realistic" pipeline
# relay: async flow, sync tasks, one client; mixed: the same, a client per task;
# sync_nohb: sync with the flow heartbeat off
FORMS = ("relay", "mixed", "sync", "async", "sync_nohb")


# -- the measurement (child process) ----------------------------------------------------------


def measure(runs: int) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.client import one_client_for_tasks

    def run_cmd(argv: list[str]) -> None:
        subprocess.run(argv, check=True)

    @task(cache_policy=NO_CACHE)
    def stage(argv: list[str]) -> None:
        run_cmd(argv)

    @task(cache_policy=NO_CACHE)
    async def astage(argv: list[str]) -> None:
        proc = await asyncio.create_subprocess_exec(*argv)
        await proc.wait()

    @flow
    def sync_pipeline(argv: list[str]) -> None:
        for _ in range(STAGES):
            stage(argv)

    @flow
    async def relay_pipeline(argv: list[str]) -> None:
        with one_client_for_tasks():
            for _ in range(STAGES):
                stage(argv)

    @flow
    async def mixed_pipeline(argv: list[str]) -> None:
        for _ in range(STAGES):
            stage(argv)

    @flow
    async def async_pipeline(argv: list[str]) -> None:
        for _ in range(STAGES):
            await astage(argv)

    def timed(call: Any) -> float:
        time.sleep(SETTLE)  # the server has written the previous run's events
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0

    def no_heartbeat(argv: list[str]) -> None:
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            sync_pipeline(argv)

    noop, work = ["true"], ["sleep", str(WORK)]
    sync_pipeline(noop)  # warm-up: imports, flow registration
    asyncio.run(async_pipeline(noop))
    asyncio.run(relay_pipeline(noop))
    asyncio.run(mixed_pipeline(noop))
    out: dict[str, list[float]] = {k: [] for k in ("direct", "sync", "async", "direct_work")}
    out.update(sync_work=[], async_work=[], sync_nohb=[], sync_nohb_work=[])
    out.update(relay=[], relay_work=[], mixed=[], mixed_work=[])
    for _ in range(runs):
        out["direct"].append(timed(lambda: [run_cmd(noop) for _ in range(STAGES)]))
        out["sync"].append(timed(lambda: sync_pipeline(noop)))
        out["async"].append(timed(lambda: asyncio.run(async_pipeline(noop))))
        out["direct_work"].append(timed(lambda: [run_cmd(work) for _ in range(STAGES)]))
        out["sync_work"].append(timed(lambda: sync_pipeline(work)))
        out["async_work"].append(timed(lambda: asyncio.run(async_pipeline(work))))
        out["sync_nohb"].append(timed(lambda: no_heartbeat(noop)))
        out["sync_nohb_work"].append(timed(lambda: no_heartbeat(work)))
        out["relay"].append(timed(lambda: asyncio.run(relay_pipeline(noop))))
        out["relay_work"].append(timed(lambda: asyncio.run(relay_pipeline(work))))
        out["mixed"].append(timed(lambda: asyncio.run(mixed_pipeline(noop))))
        out["mixed_work"].append(timed(lambda: asyncio.run(mixed_pipeline(work))))
    med = {k: statistics.median(v) for k, v in out.items()}
    result: dict[str, Any] = {"raw": out, "median": med}
    for form in FORMS:
        result[f"{form}_per_task_s"] = (med[form] - med["direct"]) / STAGES
        result[f"{form}_overhead_fraction"] = (med[f"{form}_work"] - med["direct_work"]) / med[
            "direct_work"
        ]
    return result


# -- the backends (parent process) -------------------------------------------------------------


def _child(api_url: str, runs: int) -> dict[str, Any]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, __file__, "--measure", "--runs", str(runs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"measurement failed:\n{res.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def with_postgres(runs: int) -> dict[str, Any]:
    """The measurement against a Prefect server on PostgreSQL (bench/postgres.py)."""
    from bench.postgres import prefect_on_postgres

    with prefect_on_postgres() as server:
        return _child(server.api_url, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.runs)))
        return 0
    import devstack
    from bench.results import write_results

    results = {"sqlite": _child(devstack.environment()["PREFECT_API_URL"], args.runs)}
    try:
        results["postgresql"] = with_postgres(args.runs)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        results["postgresql"] = {"error": str(exc)}
        print(f"overhead: PostgreSQL backend not measured: {exc}", file=sys.stderr)
    print(f"\nOrchestration overhead ({STAGES} stages, median of {args.runs})")
    print(f"{'backend':<11} {'form':<9} {'s/task':>8} {'target':>8} {'overhead':>9} {'target':>7}")
    for backend, r in results.items():
        if "error" in r:
            print(f"{backend:<11} not measured: {r['error'][:80]}")
            continue
        for form in FORMS:
            per, frac = r[f"{form}_per_task_s"], r[f"{form}_overhead_fraction"]
            print(
                f"{backend:<11} {form:<9} {per * 1000:>6.0f}ms {'<=50ms':>8} "
                f"{frac * 100:>8.1f}% {'<=5%':>7}"
            )
    payload = {
        "stages": STAGES,
        "work_seconds_per_stage": WORK,
        "runs": args.runs,
        "backends": results,
        "machine": {"nproc": os.cpu_count(), "python": pyplatform.python_version()},
        "at": datetime.now(UTC).isoformat(),
    }
    print(f"written to {write_results('overhead', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
