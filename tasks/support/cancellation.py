"""Cancelling a run that no worker watches: `relay run` and `relay promote` run their flows in
the command's own process, where Prefect's cancellation (a worker ending the process) does not
reach. `relay cancel` and the UI's Cancel button set the top run to Cancelling; the steps that
take time (a canary's steps and pauses, the next service of a release) ask here first and stop
with `Cancelled`, which takes a canary's traffic back like any other failure.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext

from relay.errors import Cancelled

STOPPING = (StateType.CANCELLING, StateType.CANCELLED)
_roots: dict[UUID, UUID] = {}  # flow run -> its top run; a run's ancestors never change


def raise_if_cancelled() -> None:
    """Raise `Cancelled` when this flow run, or the run it is part of, is being cancelled."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        for run_id in dict.fromkeys([context.flow_run.id, _root(client, context.flow_run.id)]):
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.type in STOPPING:
                raise Cancelled(f"{run.name} was cancelled: {run.state.message or 'cancelled'}")


def _root(client: SyncPrefectClient, run_id: UUID) -> UUID:
    if run_id not in _roots:
        current = client.read_flow_run(run_id)
        while current.parent_task_run_id is not None:
            parent = client.read_task_run(current.parent_task_run_id)
            if parent.flow_run_id is None:
                break
            current = client.read_flow_run(parent.flow_run_id)
        _roots[run_id] = current.id
    return _roots[run_id]
