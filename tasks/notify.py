"""Notify stage: tell people when something needs them, as Prefect events.

An event is Prefect's own routing point: an automation (`prefect.yaml` triggers, or the UI)
turns `relay.*.failed` into a Slack message, an e-mail or a page, without Relay knowing about
any of those systems.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger


@task(name="notify", cache_policy=NO_CACHE)
def notify(event: str, app: str, summary: str, details: dict[str, Any]) -> None:
    get_run_logger().error("%s: %s", event, summary)
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"relay.app.{app}", "prefect.resource.name": app},
        payload={"summary": summary, **details},
    )
