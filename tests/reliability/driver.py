"""Runs one Relay flow (or approval step) in its own process, against whatever stack its
environment points at, and prints one JSON line: ``{"ok": ..., "error": ..., "result": ...}``.

Why a process: the reliability tests inject faults into a private stack, and Prefect binds its
API URL when it is imported; a subprocess with the private stack's environment is the only way
to run a flow there while the test process stays on the shared stack. It also makes "kill the
process that runs the flow" (a worker's flow-run process) a real SIGKILL.

    driver.py pipeline REPO COMMIT SERVICE ENVIRONMENT
    driver.py release  REPO COMMIT SERVICES THROUGH       (SERVICES: comma-separated)
    driver.py promote  REPO COMMIT ENVIRONMENT SERVICES
    driver.py deployment POOL NAME                        (service-pipeline on a new pool)
    driver.py waiting                                     (ids of paused approval runs)
    driver.py approve  RUN_ID APPROVER
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _run(command: str, args: list[str]) -> Any:
    if command == "pipeline":
        from flows.service_pipeline import service_pipeline

        repo, commit, service, environment = args
        return asyncio.run(service_pipeline(repo, commit, service, environment)).model_dump()
    if command == "release":
        from flows.release import release

        repo, commit, services, through = args
        shipped = asyncio.run(release(repo, commit, services=services.split(","), through=through))
        return [r.model_dump() for r in shipped]
    if command == "promote":
        from flows.promote import promote

        repo, commit, environment, services = args
        promoted = asyncio.run(promote(repo, commit, environment, services.split(",")))
        return [r.model_dump() for r in promoted]
    if command == "deployment":
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        from flows.service_pipeline import service_pipeline

        pool, name = args
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        # A process worker runs flows in a temporary directory unless told where the code is.
        where = {"working_dir": str(Path(__file__).resolve().parents[2])}
        deployment = service_pipeline.to_deployment(
            name=name, work_pool_name=pool, job_variables=where
        )
        return str(deployment.apply())
    if command == "waiting":
        from deployments.approvals import waiting_runs

        return [str(r.id) for r in waiting_runs()]
    if command == "approve":
        from deployments.approvals import decide

        run_id, approver = args
        return str(decide(run_id, True, approver, "reliability test", wait=20))
    raise SystemExit(f"unknown command {command!r}")


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    try:
        result = _run(command, args)
    except BaseException as exc:  # report every outcome as data: the test judges it
        print(traceback.format_exc(), file=sys.stderr)
        answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    else:
        answer = {"ok": True, "result": result}
    print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
