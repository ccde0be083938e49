"""`--auto-approve` against the real Prefect server: an answer the flow refuses ends the
promotion at once, with the reason, instead of waiting out the approval timeout."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_runs import pause_flow_run, resume_flow_run

from deployments.approvals import REFUSAL_MARK, auto_approving, decide, waiting_runs
from flows.approval import ApprovalForm

pytestmark = pytest.mark.stack

# How long the flow takes to judge an answer: longer than `decide` watches for a refusal
# (8 s), as when a loaded server is slow to take the run from Running back to Paused.
JUDGING_SECONDS = 10.0
TIMEOUT_SECONDS = 90


@flow
async def refusing() -> tuple[bool, str]:
    """The approval flow's shape: a form; an answer it refuses (the approver wrote the
    commit), found out slowly; the same form again, saying why."""
    first = await pause_flow_run(
        wait_for_input=ApprovalForm.with_initial_data(description="Deploy?"),
        timeout=TIMEOUT_SECONDS,
        poll_interval=1,
        key="approval-1",
    )
    await asyncio.sleep(JUDGING_SECONDS)
    note = f"> {REFUSAL_MARK} {first.approver} wrote the commit; ask someone else.\n\n"
    second = await pause_flow_run(
        wait_for_input=ApprovalForm.with_initial_data(description=note + "Deploy?"),
        timeout=TIMEOUT_SECONDS,
        poll_interval=1,
        key="approval-2",
    )
    return second.decision == "approve", second.comment


@flow(flow_run_name="promoting-{tag}")
async def promoting(tag: str) -> tuple[bool, str]:
    """What `--auto-approve` watches: a run whose approval is a subflow."""
    return await refusing()


def test_an_auto_approval_refused_late_is_rejected_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["result"] = asyncio.run(promoting(tag))

    started = time.monotonic()
    with auto_approving("alice", run_name=f"promoting-{tag}"):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout=TIMEOUT_SECONDS)
    took = time.monotonic() - started

    assert not thread.is_alive(), "the second form was never answered"
    approve, comment = outcome["result"]
    assert approve is False
    assert "alice wrote the commit" in comment
    assert took < TIMEOUT_SECONDS - 30, f"ended after {took:.0f} s: it waited for the timeout"
    printed = capsys.readouterr().out
    assert "auto-approved" in printed
    refused = [line for line in printed.splitlines() if line.startswith("auto-approve refused")]
    assert refused == [
        "auto-approve refused: alice wrote the commit; ask someone else; rejecting so the "
        "promotion ends"
    ]


@flow
async def one_form() -> str:
    answer = await pause_flow_run(
        wait_for_input=ApprovalForm.with_initial_data(description="Deploy?"),
        timeout=TIMEOUT_SECONDS,
        poll_interval=1,
        key="approval-1",
    )
    return answer.decision


def test_an_answer_without_a_decision_is_refused_and_the_run_keeps_waiting() -> None:
    """Whatever sends it (the UI checks the form too): approve or reject must be chosen."""
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=asyncio.run(one_form())))
    runner.start()
    run_id = None
    deadline = time.monotonic() + 60
    while run_id is None and time.monotonic() < deadline:
        waiting = waiting_runs("one-form")
        run_id = waiting[0].id if waiting else None
        time.sleep(0.5)
    assert run_id is not None, "the form never paused"
    with pytest.raises(RuntimeError, match="'decision' is a required property"):
        resume_flow_run(run_id, run_input={"approver": "alice", "comment": "a careless click"})
    time.sleep(2)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id).state_name == "Paused"
    decide(str(run_id), False, "alice", "rejected on purpose", wait=0)
    runner.join(timeout=60)
    assert outcome == {"result": "reject"}
