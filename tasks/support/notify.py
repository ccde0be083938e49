"""Notify stage: tell people when something needs them or went wrong.

Two channels, both Prefect's own:

* `notify` emits a Prefect event (`relay.*.failed`), for automations to route anywhere.
* `send_notification` posts through a Prefect notification block named by the environment
  variable `RELAY_NOTIFY_BLOCK` (`<block type slug>/<name>`, e.g. `slack-webhook/relay` or
  `custom-webhook/relay-notify`), so the destination (Slack, Teams, PagerDuty, any webhook) and
  its secret URL are configured once in Prefect, per worker, not in every application's
  manifest. Relay sends when a production approval starts waiting (with the link to the form),
  when a release, promotion or rollback run fails (`NOTIFY_ON_FAILURE`, top-level runs only,
  so one failure is one message), and when a rollback happens (`notify_rollback`).

A notification is a courtesy, never a gate: a missing block or an unreachable webhook is a
warning in the run's log and the deployment goes on. Texts pass through `relay.redaction`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefect import Flow, runtime, task
from prefect.blocks.core import Block
from prefect.blocks.notifications import NotificationBlock
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import emit_event
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_UI_URL

from relay.ledger import Outcome, Record
from relay.redaction import redact

__all__ = [
    "NOTIFY_BLOCK_ENV",
    "NOTIFY_ON_FAILURE",
    "notify",
    "notify_approval_waiting",
    "notify_failed_run",
    "notify_rollback",
    "run_url",
    "send_notification",
    "with_hooks",
]

NOTIFY_BLOCK_ENV = "RELAY_NOTIFY_BLOCK"
_module_logger = logging.getLogger("relay.notify")


@task(name="notify", cache_policy=NO_CACHE)
def notify(event: str, app: str, summary: str, details: dict[str, Any]) -> None:
    get_run_logger().error("%s: %s", event, summary)
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"relay.app.{app}", "prefect.resource.name": app},
        payload={"summary": summary, **details},
    )


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return _module_logger


def run_url(flow_run_id: object) -> str:
    """The Prefect UI page of a flow run (PREFECT_UI_URL, derived from the API URL)."""
    return f"{PREFECT_UI_URL.value()}/flow-runs/flow-run/{flow_run_id}"


def send_notification(subject: str, body: str) -> bool:
    """Post `subject` and `body` through the block named by RELAY_NOTIFY_BLOCK.

    Returns whether a notification went out; never raises (see the module docstring).
    """
    slug = os.environ.get(NOTIFY_BLOCK_ENV, "").strip()
    if not slug:
        return False
    logger = _logger()
    try:
        # `_sync`: hooks and async flows call this from an async context, where Prefect's
        # dispatching functions would otherwise return a coroutine.
        block = Block.load(slug, _sync=True)
        if not isinstance(block, NotificationBlock):
            raise TypeError(
                f"{slug} is a {type(block).__name__}, not a notification block; name a "
                "Slack Webhook, Custom Webhook or other notification block"
            )
        block.notify(body=redact(body), subject=redact(subject), _sync=True)
    except Exception as exc:  # noqa: BLE001 - a notification never fails a deployment
        logger.warning(
            "notification %r was not sent through %s (%s): %s",
            subject,
            slug,
            type(exc).__name__,
            redact(str(exc)),
        )
        return False
    logger.info("notified through %s: %s", slug, subject)
    return True


def notify_approval_waiting(app: str, environment: str, timeout_seconds: int) -> bool:
    """The current (approval) run waits for a decision: say where to give it."""
    url = runtime.flow_run.ui_url or run_url(runtime.flow_run.id)
    return send_notification(
        f"Approval needed: {app} to {environment}",
        f"A deployment of {app} to {environment} waits up to {timeout_seconds} s for an "
        f"approval: {url}\n"
        f"Or: relay approve {runtime.flow_run.id} --as NAME  (relay reject ... to stop it)",
    )


def notify_rollback(record: Record) -> bool:
    """A rollback happened: a canary or a train put back (ROLLED_BACK), or the rollback flow
    deployed the previous good version (strategy `rollback`)."""
    where = f"{record.app} {record.service} in {record.environment}"
    link = run_url(record.flow_run_id) if record.flow_run_id else ""
    if record.outcome in (Outcome.ROLLED_BACK, Outcome.WATCH_FAILED):
        subject = f"Rolled back: {where}"
        body = f"{record.image} (commit {record.commit[:12]}) was rolled back: {record.reason}"
    elif record.strategy == "rollback" and record.outcome == Outcome.SUCCEEDED:
        subject = f"Rollback: {where}"
        body = f"{where} was rolled back to {record.image} (commit {record.commit[:12]})"
    else:
        return False
    return send_notification(subject, body + (f"\n{link}" if link else ""))


def notify_failed_run(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Flow state hook (failed, crashed): one message per failed top-level run. A subflow's
    failure (a service pipeline in a release, an approval in a promotion) reaches the run that
    started it, which says so itself."""
    if flow_run.parent_task_run_id is not None:
        return
    send_notification(
        f"Failed: {flow_run.name} ({flow.name})",
        f"{flow.name} run {flow_run.name} ended {state.name}: {state.message or 'no message'}\n"
        f"{run_url(flow_run.id)}",
    )


NOTIFY_ON_FAILURE: dict[str, Any] = {
    "on_failure": [notify_failed_run],
    "on_crashed": [notify_failed_run],
}


def with_hooks(*hook_sets: dict[str, Any]) -> dict[str, Any]:
    """Several `@flow` hook keyword sets merged (`@flow(**with_hooks(SHIP_LOGS, NOTIFY_...))`):
    each kind of hook runs all of them, in the order given."""
    merged: dict[str, list[Any]] = {}
    for hooks in hook_sets:
        for kind, functions in hooks.items():
            merged.setdefault(kind, []).extend(functions)
    return dict(merged)
