"""Promotion rules (pure): an environment receives only what passed the one before it."""

from __future__ import annotations

from dataclasses import dataclass

from relay.errors import TerminalError
from relay.ledger import Record
from relay.manifest import Manifest


@dataclass(frozen=True)
class Candidate:
    """A service's image for a commit and the record that verified it one environment earlier."""

    service: str
    image: str
    verified: Record


def previous_environment(manifest: Manifest, environment: str) -> str:
    manifest.check_environment(environment)
    names = list(manifest.environments)
    index = names.index(environment)
    if index == 0:
        raise TerminalError(
            f"{environment} is the first environment; the release flow deploys to it, "
            f"promotion starts at {names[1] if len(names) > 1 else 'the next one'}"
        )
    return names[index - 1]


def refusal(service: str, image: str | None, commit: str, previous: str) -> str:
    if image is None:
        return (
            f"{service}: no image was built for commit {commit[:12]}; "
            "run the release flow for this commit first"
        )
    return (
        f"{service}: {image} has not passed {previous}; "
        f"deploy and verify it in {previous} before promoting it"
    )
