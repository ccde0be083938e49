"""How long each stage of a run took, for its summary artifact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Seconds per named stage, rounded to hundredths (a stage that raises is timed too), and
    a note per stage where there is something to say (cached, skipped and why)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, str] = {}

    def note(self, stage: str, text: str) -> None:
        self.notes[stage] = text

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)
