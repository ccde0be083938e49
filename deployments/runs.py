"""`relay cancel` and `relay retry`: a release or promotion stopped, or run again.

Cancel sets the run to Cancelling, as the Prefect UI's Cancel button does. A run on a worker is
ended by the worker (Prefect's own cancellation); a run in a `relay` command's process stops at
its next step (`tasks.support.cancellation`), where a canary is taken back, and the command
marks it Cancelled once it has stopped.

Retry runs the same flow with the same parameters, at the commit the failed run resolved (its
`relay.commit` label), so a branch that moved on is not what is retried. Nothing is redone that
needs no redoing: images are found by their image key, and a release or promotion deploys only
the services whose digest or settings differ from what runs.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from relay.errors import TerminalError

CONTROLLED = ("release", "promote", "rollback", "rollback-environment")
RETRIED = ("release", "promote")
AGAIN = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


@dataclass(frozen=True)
class Rerun:
    flow: str  # release | promote
    name: str
    parameters: dict[str, Any]


def rerun_of(run_id: str) -> Rerun:
    """What `relay retry RUN` runs again: the flow and its parameters, at the resolved commit."""
    with get_client(sync_client=True) as client:
        run, flow = _read(client, run_id)
    if flow not in RETRIED:
        raise TerminalError(
            f"run {run_id} ({run.name}) is a {flow!r} run; relay retry reruns a release or a "
            "promotion (the Prefect UI lists their runs, `relay history` their deployments)"
        )
    if run.state_type not in AGAIN:
        raise TerminalError(
            f"run {run_id} ({run.name}) is {run.state_name}; only a failed, crashed or cancelled "
            "release or promotion is retried"
        )
    parameters = dict(run.parameters)
    parameters["commit"] = run.labels.get("relay.commit", parameters.get("commit", "HEAD"))
    if flow == "promote" and "relay.release" in run.labels:
        parameters["release"] = run.labels["relay.release"]
    return Rerun(flow, run.name, parameters)


def cancel(run_id: str, wait: float) -> FlowRun:
    """Set the run to Cancelling and wait up to `wait` s for it to stop; the run as it is then."""
    who = getpass.getuser()
    with get_client(sync_client=True) as client:
        run, flow = _read(client, run_id)
        if flow not in CONTROLLED:
            raise TerminalError(
                f"run {run_id} ({run.name}) is a {flow!r} run; relay cancel stops a release, a "
                "promotion or a rollback"
            )
        if run.state is None or run.state.is_final():
            raise TerminalError(f"run {run_id} ({run.name}) has ended: {run.state_name}")
        if run.state.is_paused():
            raise TerminalError(
                f"run {run_id} ({run.name}) waits for a decision; answer it with relay reject"
            )
        client.set_flow_run_state(
            run.id, Cancelling(message=f"cancelled by {who} with relay cancel"), force=True
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                break
            time.sleep(1)
    return run


def settle_cancelled(run_ids: list[str]) -> None:
    """Once a command's flows have returned, a top run still Cancelling has stopped: mark it
    Cancelled (Prefect refuses the engine's own Failed state after a Cancelling one)."""
    if not run_ids:
        return
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(UUID(run_id))
            if run.state is not None and run.state.type == StateType.CANCELLING:
                client.set_flow_run_state(
                    run.id, Cancelled(message=run.state.message or "cancelled"), force=True
                )


def _read(client: SyncPrefectClient, run_id: str) -> tuple[FlowRun, str]:
    try:
        wanted = UUID(run_id)
    except ValueError:
        raise TerminalError(f"{run_id!r} is not a flow run id (a UUID)") from None
    try:
        run = client.read_flow_run(wanted)
    except ObjectNotFound:
        raise TerminalError(f"no flow run {run_id} on {client.api_url}") from None
    return run, client.read_flow(run.flow_id).name
