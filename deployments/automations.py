"""The Prefect automation that ends runs whose machine died: a flow run's process sends a
heartbeat event every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (180 by default; the local
stack's workers, 30); when a Running run's heartbeats stop (a worker's machine crashed, its
container was evicted, its process was killed) without it reaching a final state, the automation
marks it Crashed. The release that waits for it then fails at once, instead of waiting forever,
and `relay retry` runs it again. (Prefect Cloud has this built in; a self-hosted server needs
the automation, as Prefect's own guide on zombie flow runs shows.)
"""

from __future__ import annotations

import os
from datetime import timedelta

from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
from prefect.client.schemas.objects import StateType
from prefect.events.schemas.events import ResourceSpecification

NAME = "relay: crash runs that stopped sending heartbeats"
FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def unresponsive_after() -> timedelta:
    """Three missed heartbeats: a busy server's late events are not a crash."""
    frequency = int(os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "180"))
    return timedelta(seconds=3 * frequency)


def ensure_crash_detection() -> str:
    """Create the automation, or bring an existing one to this window."""
    within = unresponsive_after()
    automation = Automation(
        name=NAME,
        description="Relay: a flow run whose heartbeats stopped is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in FINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within.total_seconds():.0f} s: its worker's "
                "machine or process is gone; `relay retry` runs it again",
            )
        ],
    )
    try:
        existing = Automation.read(name=NAME)
    except ValueError:
        existing = None
    silence = f"runs crash after {within.total_seconds():.0f} s without a heartbeat"
    if existing is not None:
        existing.trigger = automation.trigger
        existing.actions = automation.actions
        existing.update()
        return f"automation {NAME!r}: {silence}"
    automation.create()
    return f"automation {NAME!r} created: {silence}"


if __name__ == "__main__":
    print(ensure_crash_detection())
