"""Deployment events: every deployment, rollback and rejected approval, said once in a shape
that anything can route (EventBridge rules to dashboards, chat or a pager; Prefect automations)
without Relay knowing about any of them.

EventBridge: source `relay`, detail-type `Relay Deployment`, `Relay Rollback` or `Relay
Approval Rejected`, detail with app, service, environment, digest, outcome, release. Prefect:
the event `relay.deployment.<outcome>` about the resource `relay.service.<app>.<env>.<service>`.
"""

from __future__ import annotations

import json
from typing import Any

from relay.ledger import Outcome, Record

SOURCE = "relay"
ROLLBACKS = frozenset({Outcome.ROLLED_BACK, Outcome.WATCH_FAILED})


def is_event(record: Record) -> bool:
    """Whether the record is something that happened: a release that kept a service as it ran
    changed nothing, and is not one."""
    return record.outcome is not Outcome.UNCHANGED


def detail_type(record: Record) -> str:
    if record.outcome is Outcome.REJECTED:
        return "Relay Approval Rejected"
    if record.outcome in ROLLBACKS or record.strategy == "rollback":
        return "Relay Rollback"
    return "Relay Deployment"


def detail(record: Record) -> dict[str, Any]:
    """What a rule can match on and a person reads; no configuration values, no secrets."""
    return {
        "app": record.app,
        "service": record.service,
        "environment": record.environment,
        "digest": record.digest,
        "image": record.image,
        "commit": record.commit,
        "outcome": record.outcome.value,
        "strategy": record.strategy,
        "release": record.release or "",
        "approver": record.approver or "",
        "reason": (record.reason or "").splitlines()[0] if record.reason else "",
        "at": record.ended_at.isoformat(),
    }


def eventbridge_entry(record: Record, bus: str) -> dict[str, Any]:
    """One `PutEvents` entry."""
    return {
        "Source": SOURCE,
        "DetailType": detail_type(record),
        "Detail": json.dumps(detail(record), sort_keys=True),
        "EventBusName": bus,
    }


def prefect_event(record: Record) -> tuple[str, dict[str, str]]:
    """The Prefect event's name and resource."""
    resource = {
        "prefect.resource.id": f"relay.service.{record.app}.{record.environment}.{record.service}",
        "prefect.resource.name": record.service,
        "relay.app": record.app,
        "relay.environment": record.environment,
    }
    return f"relay.deployment.{record.outcome.value}", resource
