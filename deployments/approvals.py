"""Answering approval forms from the command line (`relay approve|reject`, `--auto-approve`).

The answer goes through Prefect's own resume API with the same typed input the UI form sends,
so the flow applies the same policy checks whatever the channel.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import resume_flow_run

from relay.errors import TerminalError

PAUSED = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))


def waiting_runs(flow_name: str = "approval") -> list[FlowRun]:
    """Runs of `flow_name` that wait for input now."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=PAUSED),
        )


def find_waiting(run_id: str) -> FlowRun:
    """The paused run itself, or the paused run under the promotion run that was named."""
    try:
        wanted = UUID(run_id)
    except ValueError:
        raise TerminalError(f"{run_id!r} is not a flow run id (a UUID)") from None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(wanted)
        if run.state is not None and run.state.is_paused():
            return run
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[wanted]), state=PAUSED
            )
        )
    if not children:
        raise TerminalError(f"run {run_id} is not waiting for a decision (state: {run.state_name})")
    return children[0]


def decide(run_id: str, approve: bool, approver: str, comment: str = "") -> UUID:
    run = find_waiting(run_id)
    resume_flow_run(
        run.id, run_input={"approve": approve, "approver": approver, "comment": comment}
    )
    return run.id


def promote_with_auto_approval(
    repository: str,
    ref: str,
    environment: str,
    services: list[str] | None,
    approver: str | None,
) -> Any:
    """Run the promotion; with `approver`, answer its approval form as that person."""
    from flows.promote import promote

    if approver is None:
        return promote(repository, ref, environment, services)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = promote(repository, ref, environment, services)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    known = {r.id for r in waiting_runs()}
    worker = threading.Thread(target=run, name="promote", daemon=True)
    worker.start()
    while worker.is_alive():
        fresh = [r for r in waiting_runs() if r.id not in known]
        for paused in fresh:
            decide(str(paused.id), True, approver, "approved with --auto-approve")
            print(f"auto-approved {paused.name} ({paused.id}) as {approver!r} (--auto-approve)")
            known.add(paused.id)
        worker.join(timeout=0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
