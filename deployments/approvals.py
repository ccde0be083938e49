"""Answering approval forms from the command line (`relay approve|reject`, `--auto-approve`).

The answer goes through Prefect's own resume API with the same typed input the UI form sends,
so the flow applies the same policy checks whatever the channel; when the flow refuses the
answer (not an approver, the change's author, a missing or wrong token where the environment
requires one), it pauses again and this module says why. A token is registered with
`relay.redaction` here too, so nothing this process logs or raises shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import FlowPauseTimeout, NotPausedError, PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run

from relay import redaction
from relay.errors import TerminalError
from tasks.support.runs import flow_runs_under

PAUSED = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
REFUSAL_MARK = "**Not accepted:**"


def waiting_runs(flow_name: str = "approval") -> list[FlowRun]:
    """Runs of `flow_name` that wait for a decision now."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=PAUSED),
        )


def _pause_key(run: FlowRun) -> str | None:
    return run.state.state_details.pause_key if run.state is not None else None


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
        paused = _paused_under(client, wanted)
    if not paused:
        raise TerminalError(f"run {run_id} is not waiting for a decision (state: {run.state_name})")
    return paused[0]


def _paused_under(client: SyncPrefectClient, root: UUID) -> list[FlowRun]:
    """Paused runs at any depth under `root`: a promotion's approval is its child, the decision
    an inconclusive canary waits for its grandchild (promotion → canary → approval)."""
    return [
        run
        for _, run in flow_runs_under(client, [root])
        if run.state is not None and run.state.is_paused()
    ]


def decide(
    run_id: str,
    approve: bool,
    approver: str,
    comment: str = "",
    wait: float = 8.0,
    token: str = "",
) -> UUID:
    """Answer the form; raise TerminalError if the run refuses the answer (within `wait` s).

    `token` is the approver's token, for environments with `approval.require_token`."""
    redaction.register([token])
    run = find_waiting(run_id)
    answered_key = _pause_key(run)
    answer: dict[str, Any] = {
        "decision": "approve" if approve else "reject",
        "approver": approver,
        "comment": comment,
    }
    if token:
        answer["token"] = token
    try:
        _resume(run.id, answer)
    except (RuntimeError, NotPausedError, FlowPauseTimeout) as exc:
        raise TerminalError(f"run {run.id} did not take the answer: {exc}") from exc
    refusal = _refusal(run.id, answered_key, wait)
    if refusal:
        raise TerminalError(f"run {run.id} refused the answer: {refusal}")
    return run.id


# How long an answer waits for a form the run is still writing (below).
FORM_WRITTEN_SECONDS = 10.0


def _resume(run_id: UUID, answer: dict[str, Any]) -> None:
    """Resume the paused run with `answer`. A run that pauses again (it refused an answer)
    enters Paused before it stores the new form's description, which `resume_flow_run` reads
    first: answered in between, Prefect answers 404 (seen on PostgreSQL). Ask again then."""
    deadline = time.monotonic() + FORM_WRITTEN_SECONDS
    while True:
        try:
            resume_flow_run(run_id, run_input=answer)
            return
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _refusal(run_id: UUID, answered_key: str | None, wait: float) -> str | None:
    """The flow's reason when it paused again for a new answer, else None (at once when
    `wait` is 0: a rejection that ends the run is not watched)."""
    if wait <= 0:
        return None
    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is None or run.state.is_final():
                return None
            key = _pause_key(run)
            if run.state.is_paused() and key and key != answered_key:
                return _refusal_reason(run_id, key)
            if run.state.is_running() and time.monotonic() > deadline - wait / 2:
                return None
            time.sleep(0.5)
    if run.state is not None and run.state.is_paused() and _pause_key(run) == answered_key:
        # resume_flow_run raises only when the server refuses; an aborted resume (SQLite
        # "database is locked") leaves the run waiting for this very answer.
        return f"the server did not take it (the run still waits after {wait:.0f} s); answer again"
    return None


def _refusal_reason(run_id: UUID, key: str | None) -> str:
    """Why the flow paused again (pause `key`): the refusal line of the form's description."""
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run_input(run_id, f"paused-{key}-description")
    try:
        description = str(json.loads(stored))  # stored as JSON: a quoted string, \n escaped
    except ValueError:
        description = stored
    lines = [line for line in description.splitlines() if REFUSAL_MARK in line]
    reason = lines[0].split(REFUSAL_MARK, 1)[1] if lines else description[:200]
    return reason.strip(' >."')


def promote_with_auto_approval(
    repository: str,
    ref: str,
    environment: str,
    services: list[str] | None,
    approver: str | None,
    release: str | None = None,
    run_name: str | None = None,
) -> Any:
    """Run the promotion here, its run named `run_name` (default: a name of its own); with
    `approver`, answer its own approval forms as that person."""
    from flows.promote import promote

    name = run_name or f"promote-{environment}-{uuid.uuid4().hex[:8]}"
    named = promote.with_options(flow_run_name=name)
    if approver is None:
        return asyncio.run(named(repository, ref, environment, services, release=release))
    with auto_approving(approver, run_name=name):
        return asyncio.run(named(repository, ref, environment, services, release=release))


@contextmanager
def auto_approving(
    approver: str, run_name: str | None = None, run_id: UUID | None = None
) -> Iterator[None]:
    """While the block runs, answer the forms under one flow run (given by id, or by a name
    set with `with_options`) as `approver`, never another promotion's, and say so."""
    stop = threading.Event()
    watcher = threading.Thread(
        target=_answer_forms,
        args=(run_name, run_id, approver, stop),
        name="auto-approve",
        daemon=True,
    )
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=10)


def _answer_forms(
    run_name: str | None, run_id: UUID | None, approver: str, stop: threading.Event
) -> None:
    """Approve each form once. A form that pauses again after our answer refused it (say, the
    commit's author where self-approval is off): reject it with the reason, so the promotion
    ends at once instead of waiting out the approval timeout."""
    answered: dict[UUID, str | None] = {}  # form -> the pause our approval answered
    token = os.environ.get("RELAY_APPROVAL_TOKEN", "")  # where the environment requires one
    while not stop.wait(0.5):
        for form in _paused_descendants(run_name, run_id):
            key = _pause_key(form)
            if form.id not in answered:
                answered[form.id] = key
                _approve(form, approver, token)
            elif answered[form.id] not in (key, _REJECTED):
                answered[form.id] = _REJECTED
                reason = _refusal_reason(form.id, key)
                print(f"auto-approve refused: {reason}; rejecting so the promotion ends")
                decide(str(form.id), False, approver, f"--auto-approve refused: {reason}", 0, token)


_REJECTED = "rejected"


def _approve(form: FlowRun, approver: str, token: str) -> None:
    try:
        decide(str(form.id), True, approver, "approved with --auto-approve", token=token)
        print(f"auto-approved {form.name} ({form.id}) as {approver!r} (--auto-approve)")
    except TerminalError as exc:
        print(f"auto-approve failed: {exc}; rejecting so the promotion ends")
        decide(str(form.id), False, approver, f"--auto-approve refused: {exc}", 0, token)


def _paused_descendants(run_name: str | None, run_id: UUID | None) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        if run_id is None:
            parents = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name or ""]))
            )
            if not parents:
                return []
            run_id = parents[0].id
        return _paused_under(client, run_id)
