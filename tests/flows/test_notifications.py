"""Notifications through a Prefect notification block (a Custom Webhook with Slack's body) to a
local receiver: a production approval that waits says where to answer it; a notification
that cannot be sent is a warning, never a failure. Rollbacks and failed runs: test_observability.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Iterator

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from deployments.approvals import decide, waiting_runs
from flows.approval import approval
from relay.errors import NotApproved
from relay.manifest import Approval
from tasks.support.notify import NOTIFY_BLOCK_ENV, send_notification
from tests.receivers import Received, http_receiver

pytestmark = pytest.mark.stack


def webhook_block(url: str) -> str:
    name = f"relay-notify-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name="relay", url=url, json_data={"text": "*{{subject}}*\n{{body}}"}, timeout=3
    ).save(name)
    return f"custom-webhook/{name}"


@pytest.fixture()
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    with http_receiver() as received:
        monkeypatch.setenv(NOTIFY_BLOCK_ENV, webhook_block(f"{received.url}/slack"))
        yield received


def test_a_waiting_production_approval_sends_its_link(slack: Received) -> None:
    app = f"note-{uuid.uuid4().hex[:6]}"
    policy = Approval(required=True, timeout_seconds=60, approvers=["alice"])
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            asyncio.run(approval(app, "prod", "Deploy?", policy, ["author"]))
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    slack.wait_for(lambda r: len(r.requests) >= 1)
    [text] = [json.loads(body)["text"] for body in slack.bodies()]
    assert text.startswith(f"*Approval needed: {app} to prod*")
    [form] = [r for r in waiting_runs() if r.name == f"approve-{app}-prod"]
    assert f"/flow-runs/flow-run/{form.id}" in text and f"relay approve {form.id}" in text
    decide(str(form.id), False, "alice", "only a test")
    thread.join(timeout=30)
    assert isinstance(errors[0], NotApproved)


def test_a_notification_that_cannot_be_sent_fails_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(NOTIFY_BLOCK_ENV, webhook_block("http://127.0.0.1:9/closed"))
    assert send_notification("subject", "body") is False
    monkeypatch.setenv(NOTIFY_BLOCK_ENV, "custom-webhook/no-such-block")
    assert send_notification("subject", "body") is False
    monkeypatch.delenv(NOTIFY_BLOCK_ENV)
    assert send_notification("subject", "body") is False
    assert NOTIFY_BLOCK_ENV not in os.environ
