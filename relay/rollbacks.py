"""Rollback targets (pure): what a one-service or a whole-environment rollback goes back to.

A rollback skips every caution a deployment takes (no canary, no analysis) because its target
already served there successfully. Two rules guard it: there must be such a target, and
rolling back what is itself a rollback is refused, since it would bring back the version that
was just taken out; promote the one you want instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.errors import TerminalError
from relay.ledger import Record
from relay.releases import SHORT, Arrival, Via

__all__ = ["previous_release", "service_target"]


def service_target(
    service: str, environment: str, current: Record | None, previous_good: Record | None
) -> Record:
    """The version a one-service rollback deploys: `previous_good` (the ledger's latest success
    of another digest there), unless the current one is a rollback already.

    Raises:
        TerminalError: nothing to go back to, or the current version is itself a rollback.
    """
    if current is not None and current.strategy == "rollback":
        raise TerminalError(
            f"{service} in {environment} already runs a rolled-back version "
            f"({current.image}, since {current.ended_at:%Y-%m-%d %H:%M} UTC); rolling back "
            f"again would bring back the version it replaced. Promote the version you want "
            "instead; see "
            f"`relay history {service} --env {environment}`"
        )
    if previous_good is None:
        raise TerminalError(
            f"{service} has no earlier good version in {environment} to roll back to; "
            f"see `relay history {service}`"
        )
    return previous_good


def previous_release(arrivals: Sequence[Arrival], environment: str) -> Arrival:
    """The arrival an environment rollback returns to: the release that served before the
    current one.

    Raises:
        TerminalError: nothing served before, or the current release is itself a rollback
            (rolling back again would bring back the release it replaced).
    """
    if not arrivals:
        raise TerminalError(
            f"no release has served {environment} as a whole yet; roll back one service with "
            f"`relay rollback --service NAME --env {environment}`"
        )
    current = arrivals[-1]
    if current.via == Via.ROLLBACK:
        raise TerminalError(
            f"{environment} already runs a rolled-back release ({current.release[:SHORT]}, since "
            f"{current.at:%Y-%m-%d %H:%M} UTC); rolling back again would bring back the release "
            f"it replaced. Promote the release you want instead (`relay releases --env "
            f"{environment}` lists them)"
        )
    for earlier in reversed(arrivals[:-1]):
        if earlier.release != current.release:
            return earlier
    raise TerminalError(
        f"{environment} has served only release {current.release[:SHORT]}; there is no earlier "
        "release to roll back to"
    )
