"""How the stack runs: on the embedded SQLite default, or on PostgreSQL with several workers.

`relay stack up --postgres --workers 2` starts Debian's PostgreSQL (backing the Prefect server
and Relay's database) and two workers, each with a `RELAY_HOME` of its own, standing for two
machines. The choice is remembered in ``$RELAY_HOME/stack-mode.json``: a later `up` without
options keeps it, and clients (`environment()`) read it to find Relay's database.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from devstack.errors import StackError
from devstack.paths import Paths

MAX_WORKERS = 8


@dataclass(frozen=True)
class StackMode:
    postgres: bool = False
    workers: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise StackError(
                f"--workers {self.workers}: the local stack runs 1 to {MAX_WORKERS} workers"
            )

    def describe(self) -> str:
        database = "PostgreSQL" if self.postgres else "SQLite"
        return f"{database}, {self.workers} worker{'' if self.workers == 1 else 's'}"


def load_mode(paths: Paths) -> StackMode:
    """The mode the stack was last brought up in (the default when it never was)."""
    path = paths.home / "stack-mode.json"
    try:
        data = json.loads(path.read_text())
        return StackMode(postgres=bool(data["postgres"]), workers=int(data["workers"]))
    except (OSError, ValueError, KeyError, TypeError):
        return StackMode()


def save_mode(paths: Paths, mode: StackMode) -> None:
    path = paths.home / "stack-mode.json"
    path.write_text(json.dumps(asdict(mode)) + "\n")
