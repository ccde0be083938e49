"""Publishing deployment events (relay/events.py) to EventBridge and to Prefect. An event that
cannot be sent is a warning in the run's log, never a failed deployment: the ledger has it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from blocks.aws import aws_client
from relay.aws.errors import call
from relay.events import detail, eventbridge_entry, is_event, prefect_event
from relay.ledger import Record
from relay.manifest import CloudWatch


@task(name="publish-deployment-event", cache_policy=NO_CACHE)
def publish_deployment_event(record: Record, settings: CloudWatch) -> None:
    if not is_event(record):
        return
    logger = get_run_logger()
    name, resource = prefect_event(record)
    try:
        emit_event(event=name, resource=resource, payload=detail(record))
    except Exception as exc:  # noqa: BLE001 - an event is never worth a failed deployment
        logger.warning("Prefect event %s not emitted: %s", name, exc)
    if not settings.events:
        return
    try:
        answer = call(
            aws_client("events").put_events,
            f"sending a deployment event to EventBridge bus {settings.event_bus}",
            "events:PutEvents on the bus",
            Entries=[eventbridge_entry(record, settings.event_bus)],
        )
    except Exception as exc:  # noqa: BLE001 - RelayError, or no region, a block that fails
        logger.warning("EventBridge: %s: event not sent: %s", record.service, exc)
        return
    if answer.get("FailedEntryCount"):
        failed = answer["Entries"][0]
        logger.warning(
            "EventBridge refused the event of %s: %s %s",
            record.service,
            failed.get("ErrorCode"),
            failed.get("ErrorMessage"),
        )
