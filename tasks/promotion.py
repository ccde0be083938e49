"""Promotion gate: every digest of the release passed the previous environment, and served there
for the target's `soak_seconds`. Refuses as a whole, naming every service, before anything is
deployed."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from relay.errors import TerminalError
from relay.ledger import Ledger, Record
from relay.promotion import refusals, soak_refusal
from relay.releases import Release
from relay.settings import relay_database
from tasks.support.retry import on_transient


@task(
    name="verify-promotable",
    cache_policy=NO_CACHE,
    **on_transient(2, 2),
)
def verify_promotable(
    release: Release,
    services: list[str],
    previous: str,
    environment: str = "",
    soak_seconds: int = 0,
) -> dict[str, Record]:
    """The record that verified each service's digest in `previous`; a release that has not
    served there for `environment`'s `soak_seconds` yet is refused, saying when it may go."""
    ledger = Ledger(relay_database())
    passed = {
        service: ledger.verified_in(release.app, previous, service, release.image(service).digest)
        for service in services
    }
    problems = refusals(release, services, previous, passed)
    verified = {service: record for service, record in passed.items() if record is not None}
    if not problems and soak_seconds:
        since = {
            service: ledger.serving_since(
                release.app, previous, service, release.image(service).digest
            )
            or record.ended_at
            for service, record in verified.items()
        }
        early = soak_refusal(release, since, previous, environment, soak_seconds, datetime.now(UTC))
        problems = [early] if early else []
    if problems:
        raise TerminalError(
            "refusing to promote; nothing was deployed:\n  " + "\n  ".join(problems)
        )
    return verified
