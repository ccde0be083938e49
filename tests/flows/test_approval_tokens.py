"""Approval integrity on the real Prefect server: where `approval.require_token` is on, a name
typed into the form does not approve; the approver's own token does, a wrong one is refused,
and no token text reaches the server (logs, stored inputs) or an error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun

from deployments.approvals import decide
from flows.approval import Decision, approval
from relay.approval import new_token, token_digest
from relay.errors import TerminalError
from relay.manifest import Approval

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def tokens() -> Iterator[tuple[str, str]]:
    """(secret id, alice's token) in the stack's Secrets Manager."""
    secret_id = f"relay-test/approvers-{uuid.uuid4().hex[:8]}"
    token = new_token()
    client = boto3.client("secretsmanager")
    client.create_secret(Name=secret_id, SecretString=json.dumps({"alice": token_digest(token)}))
    yield secret_id, token
    client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


def paused_run(name: str, timeout: float = 60) -> FlowRun:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                return runs[0]
            time.sleep(0.3)
    raise AssertionError(f"no paused run {name}")


def everything_stored(run: FlowRun) -> str:
    """The run's log lines and stored inputs, as the server hands them to anyone."""
    time.sleep(1.5)  # the API log handler's batch interval
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        inputs = client.filter_flow_run_input(run.id, "paused", 100, set())
        state = client.read_flow_run(run.id).state
    return "\n".join(
        [log.message for log in logs]
        + [f"{i.key}={i.value}" for i in inputs]
        + [state.message or "" if state else ""]
    )


def test_only_the_approvers_token_approves(tokens: tuple[str, str]) -> None:
    secret_id, token = tokens
    app = f"tok-{uuid.uuid4().hex[:6]}"
    policy = Approval(
        required=True,
        timeout_seconds=90,
        approvers=["alice"],
        require_token=True,
        tokens_secret=secret_id,
    )
    outcome: dict[str, Any] = {}

    def wait_for_decision() -> None:
        try:
            outcome["decision"] = asyncio.run(approval(app, "prod", "Deploy?", policy, ["author"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions
            outcome["error"] = exc

    thread = threading.Thread(target=wait_for_decision, daemon=True)
    thread.start()
    run = paused_run(f"approve-{app}-prod")

    with pytest.raises(TerminalError, match="requires the approver's token"):
        decide(str(run.id), True, "alice", "a name alone")
    wrong = f"not-alices-token-{uuid.uuid4().hex}"
    with pytest.raises(TerminalError, match="the token given is not 'alice''s") as refused:
        decide(str(run.id), True, "alice", "a wrong token", token=wrong)
    assert wrong not in str(refused.value)
    with pytest.raises(TerminalError, match="the token given is not 'alice''s"):
        decide(str(run.id), False, "alice", "a rejection needs the token too", token=wrong)
    assert thread.is_alive(), "nothing but alice's token may decide"

    decide(str(run.id), True, "alice", "with my token", token=token)
    thread.join(timeout=60)
    assert outcome.get("decision") == Decision(approver="alice", comment="with my token")

    stored = everything_stored(run)
    assert "not accepted" in stored.lower() or "waiting up to" in stored
    assert "paused-approval-1-description" in stored, "the stored inputs were read"
    assert wrong not in stored and token not in stored
