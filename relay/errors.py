"""Relay's exceptions.

The exception tree:

* RelayError
  + TerminalError - invalid configuration or input; retrying cannot help, so it never is.
    - ManifestError - `relay.yaml` is invalid; carries every problem found, not just the first.
  + TransientError - a network-ish failure (registry, Docker engine, AWS) worth retrying.
  + StageFailed - a stage failed on its merits: tests red, SAST findings over the threshold,
    a health check failed. A business failure, reported and never retried.
    - RolledBack - a new version was started, then taken out again (failed analysis or smoke
      tests); the previous version serves.
  + NotApproved - a person rejected the deployment, or nobody decided in time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relay.redaction import redact

__all__ = [
    "Cancelled",
    "ManifestError",
    "NotApproved",
    "Refusals",
    "RelayError",
    "RolledBack",
    "StageFailed",
    "TerminalError",
    "TransientError",
]


class RelayError(Exception):
    """Base class of every error Relay raises on purpose.

    Its text is masked (`relay.redaction`): it may quote foreign output, such as a container's
    last lines, and Prefect stores it as the failed state's message.
    """

    def __str__(self) -> str:
        return redact(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TerminalError(RelayError):
    """Invalid configuration or input: fix it and run again; never retried."""


class ManifestError(TerminalError):
    """The release manifest is invalid.

    Attributes:
        path: The manifest file, or how messages name it (`relay.yaml (git://… at 1a2b3c)`:
            a string, since a Path would fold a URL's `//`).
        problems: Every problem found, each one line formatted as
            `"<file>: <field.path>: <what is wrong>; <what to write instead>"`.
    """

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        # Both go to Exception.args so that the error survives pickling (Prefect stores it).
        super().__init__(path, problems)
        self.path = path
        self.problems = problems

    def __str__(self) -> str:
        count = len(self.problems)
        header = f"{self.path}: {count} problem{'' if count == 1 else 's'} in the release manifest"
        return "\n".join([header, *(f"  {problem}" for problem in self.problems)])


class TransientError(RelayError):
    """A network-ish failure that is worth retrying."""


class StageFailed(RelayError):
    """A pipeline stage failed on its merits; a business failure, not retried."""


class RolledBack(StageFailed):
    """A new version was taken out again after it started; the previous version serves."""


class WatchFailed(RolledBack):
    """A new version failed while it was watched after taking all traffic (`watch_seconds`),
    and was taken out again; the previous version serves."""


class Cancelled(RelayError):
    """A person cancelled the run (`relay cancel`, the Prefect UI's Cancel): it stops at its
    next step, and a new version that has traffic is taken out again."""


class NotApproved(RelayError):
    """The deployment was rejected, or its approval timed out (which counts as a rejection)."""


class Refusals:
    """Every refusal of a gate over several items, raised once at the end naming them all: a
    promotion is refused as a whole, before anything is deployed, and whoever fixes it sees
    all the work at once.

    Example:
        >>> refusals = Refusals("the image scan gate refused; nothing was deployed")
        >>> for service in services:  # doctest: +SKIP
        ...     with refusals.check():
        ...         check(service)
        >>> refusals.raise_if_any()  # doctest: +SKIP
    """

    def __init__(self, heading: str) -> None:
        self.heading = heading
        self.problems: list[StageFailed | TerminalError] = []

    @contextmanager
    def check(self) -> Iterator[None]:
        """Keep a refusal (StageFailed, TerminalError) raised in the block; others propagate."""
        try:
            yield
        except (StageFailed, TerminalError) as exc:
            self.problems.append(exc)

    def raise_if_any(self) -> None:
        """TerminalError when one of them is (bad input), else StageFailed, with every line."""
        if not self.problems:
            return
        terminal = any(isinstance(p, TerminalError) for p in self.problems)
        # Several items often fail for one cause (one missing secret, every service): once.
        lines = list(
            dict.fromkeys(
                f"  {line}" for problem in self.problems for line in str(problem).splitlines()
            )
        )
        raise (TerminalError if terminal else StageFailed)("\n".join([f"{self.heading}:", *lines]))
