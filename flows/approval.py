"""Manual approval as a subflow: the run pauses with a typed form until a person decides.

The form is Prefect's own (`pause_flow_run(wait_for_input=...)`), answered from the Prefect UI,
`relay approve|reject`, or the API. An answer that breaks the environment's policy (not an
approver, approving one's own change) pauses again with the reason on top. No decision before
the timeout counts as a rejection. While one of the environment's `block_on_alarms` is in ALARM,
no form is shown and an approval given is not accepted (checked again before deploying): that
is a rejection too, naming the alarm.

Open-source Prefect does not authenticate who submits a form: the approver's name is whatever
was typed. With `approval.require_token`, every decision must also carry that approver's token
(`relay.approval`, digests in AWS Secrets Manager), checked before the run goes on; a missing or
wrong token pauses again with the reason, like a refused approver. The token is registered with
`relay.redaction` the moment it is read and the answer (which the Prefect server stores as the
run's input) is deleted from the server, so it is in no log and cannot be read back later.
When the form is first shown, the people behind `RELAY_NOTIFY_BLOCK` get its link.
"""

from __future__ import annotations

import contextlib
import time
from typing import Literal

from prefect import flow, runtime
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field, SecretStr

from flows.client import one_client_for_tasks
from relay import redaction
from relay.approval import approval_problem, token_problem
from relay.errors import NotApproved
from relay.manifest import Approval
from tasks.approval import read_approver_tokens
from tasks.metrics import read_alarm_states
from tasks.support.notify import notify_approval_waiting

POLL_SECONDS = 2


class ApprovalForm(RunInput):
    """The form a person fills in. The decision has no default: the form cannot be sent until
    approve or reject is chosen (the server checks it too), so one careless click decides
    nothing either way."""

    decision: Literal["approve", "reject"] = Field(
        description="Approve deploys it; reject stops the promotion. Nothing is chosen for you."
    )
    approver: str = Field(description="Your name, as listed in the environment's approvers.")
    comment: str = Field(default="", description="Why; kept in the ledger with your name.")
    # SecretStr: a password field in the UI (JSON schema format "password"), masked in reprs.
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Your approval token, where this environment requires one (never logged).",
    )


class Decision(BaseModel):
    approver: str
    comment: str


@flow(name="approval", flow_run_name="approve-{app}-{environment}")
async def approval(
    app: str, environment: str, description: str, policy: Approval, authors: list[str]
) -> Decision:
    """Wait for an approval of `app` in `environment`; raise NotApproved otherwise."""
    with one_client_for_tasks():  # the tasks share one client (flows/client.py)
        _stop_on_alarms(app, environment, policy, "no approval was asked")
        deadline = time.monotonic() + policy.timeout_seconds
        get_run_logger().info(
            "waiting up to %s s for a decision: answer the form in the Prefect UI, or run "
            "`relay approve %s --as NAME` / `relay reject %s --as NAME`",
            policy.timeout_seconds,
            runtime.flow_run.id,
            runtime.flow_run.id,
        )
        notify_approval_waiting(app, environment, policy.timeout_seconds)
        note = ""
        for round_ in range(1, 100):
            remaining = int(deadline - time.monotonic())
            if remaining <= 0:
                break
            try:
                answer = await pause_flow_run(
                    wait_for_input=ApprovalForm.with_initial_data(description=note + description),
                    timeout=remaining,
                    poll_interval=POLL_SECONDS,
                    key=f"approval-{round_}",
                )
            except FlowPauseTimeout:
                break
            token = answer.token.get_secret_value()
            redaction.register([token])
            _forget_answer(f"approval-{round_}")
            problem = approval_problem(answer.approver, policy, authors)
            if problem is None and policy.require_token:
                digests = read_approver_tokens(policy.tokens_secret)
                problem = token_problem(answer.approver, token, digests, policy.tokens_secret)
            if problem is not None:
                note = f"> **Not accepted:** {problem}.\n\n"
                continue
            if answer.decision != "approve":
                raise NotApproved(
                    f"{answer.approver} rejected {app} in {environment}"
                    + (f": {answer.comment}" if answer.comment else "")
                )
            _stop_on_alarms(
                app, environment, policy, f"{answer.approver}'s approval was not accepted"
            )
            return Decision(approver=answer.approver, comment=answer.comment)
        raise NotApproved(
            f"nobody approved {app} in {environment} within {policy.timeout_seconds} s; "
            "a timeout counts as a rejection, nothing was deployed"
        )


def _forget_answer(key: str) -> None:
    """Delete the answer Prefect stored for pause `key`: it may hold a token, and the server
    hands stored inputs to any caller. The decision itself is in the ledger and the logs."""
    response = keyset_from_base_key(f"paused-{key}")["response"]
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_flow_run_input(runtime.flow_run.id, response)


def _stop_on_alarms(app: str, environment: str, policy: Approval, what: str) -> None:
    """Raise NotApproved while one of `policy.block_on_alarms` is in ALARM: releasing into an
    environment that is already in trouble makes the trouble harder to read and to fix."""
    if not policy.block_on_alarms:
        return
    where = f"relay.yaml: environments.{environment}.approval.block_on_alarms"
    states = read_alarm_states(list(policy.block_on_alarms), where)
    firing = [name for name, state in states.items() if state == "ALARM"]
    if firing:
        raise NotApproved(
            f"CloudWatch alarm {', '.join(repr(n) for n in firing)} is in ALARM ({where}): "
            f"{what} and nothing was deployed to {app} {environment}; promote again once it is OK"
        )
