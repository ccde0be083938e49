"""What a security gate decided about an image: one shape for every gate (pure).

Each gate (compliance, package advisories, ECR's scan findings) judges a list of items, each
row saying whether it blocks and why (an allow entry, a skip, under the threshold), and passes
unless one blocks. `GateVerdict` is that shape for all of them; its rows are the gate's own
judged items, so their columns stay what each gate reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["GateVerdict", "Judged"]


class Judged(Protocol):
    """One judged item of a gate."""

    @property
    def blocking(self) -> bool:
        """Whether this item alone stops the image (before `fail_on: never` is applied)."""
        ...


J = TypeVar("J", bound=Judged)


@dataclass(frozen=True)
class GateVerdict(Generic[J]):
    """`passed` unless a row blocks (a gate set to report only passes anyway); `rows` holds
    every item judged, blocking or not, for the gate's table artifact."""

    passed: bool
    rows: tuple[J, ...]

    @property
    def blocking(self) -> tuple[J, ...]:
        """What stops the image: nothing when it passed."""
        return () if self.passed else tuple(row for row in self.rows if row.blocking)

    @classmethod
    def of(cls, rows: tuple[J, ...], report_only: bool = False) -> GateVerdict[J]:
        return cls(passed=report_only or not any(row.blocking for row in rows), rows=rows)
