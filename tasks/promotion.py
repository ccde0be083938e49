"""Promotion gate: find each service's image for a commit and check it passed the previous
environment. Refuses as a whole, before anything is deployed."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import ContainerRegistry
from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.promotion import Candidate, refusal
from relay.registry import ImageRef
from relay.settings import ledger_path


@task(name="verify-promotable", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def verify_promotable(
    registry: ContainerRegistry, app: str, commit: str, services: list[str], previous: str
) -> list[Candidate]:
    ledger = Ledger(ledger_path())
    candidates, problems = [], []
    with registry.get_client() as client:
        for service in services:
            repository = f"{app}/{service}"
            digest = client.digest(repository, commit)
            image = str(ImageRef(registry.address, repository, digest)) if digest else None
            verified = ledger.verified_in(app, previous, service, digest) if digest else None
            if image is None or verified is None:
                problems.append(refusal(service, image, commit, previous))
            else:
                candidates.append(Candidate(service, image, verified))
    if problems:
        raise TerminalError(
            "refusing to promote; nothing was deployed:\n  " + "\n  ".join(problems)
        )
    return candidates
