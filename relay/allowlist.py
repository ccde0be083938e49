"""Allow entries: the one rule by which a gate lets a known finding through (pure).

Both security gates that judge findings against `allow` lists (ECR's scan findings, the image's
package advisories) ask the same question: does an entry name this finding (by its id or an
alias, as a team writes the CVE it knows) and is its `until` today or later? An expired entry
is reported as such, so whoever reads the refusal knows the exception ran out rather than
wondering why a "known" finding blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from relay.manifest import AllowedFinding

__all__ = ["Allowance", "allowance"]


@dataclass(frozen=True)
class Allowance:
    """Whether an allow entry lets a finding through, and the note that says why (or not)."""

    allowed: bool
    note: str = ""


def allowance(names: Sequence[str], allow: Sequence[AllowedFinding], today: date) -> Allowance:
    """The verdict of `allow` on a finding known by `names` (its id first, then its aliases),
    compared case-insensitively."""
    entries = {entry.id.upper(): entry for entry in allow}
    entry = next((entries[name.upper()] for name in names if name.upper() in entries), None)
    if entry is None:
        return Allowance(allowed=False)
    if entry.until < today:
        return Allowance(False, f"allow entry {entry.id} expired on {entry.until.isoformat()}")
    return Allowance(True, f"allowed until {entry.until.isoformat()}: {entry.reason}")
