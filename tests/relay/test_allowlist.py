"""relay.allowlist: the one rule both gates apply to allow entries (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from relay.allowlist import Allowance, allowance
from relay.manifest import AllowedFinding

TODAY = date(2026, 6, 1)
ENTRY = AllowedFinding(id="cve-2019-10906", reason="no sandbox", until=TODAY)


@pytest.mark.parametrize(
    ("names", "allow", "expected"),
    [
        (["CVE-2019-10906"], [ENTRY], Allowance(True, "allowed until 2026-06-01: no sandbox")),
        (
            ["PYSEC-2019-217", "CVE-2019-10906"],
            [ENTRY],
            Allowance(True, "allowed until 2026-06-01: no sandbox"),
        ),
        (["PYSEC-2019-217"], [ENTRY], Allowance(False)),
        (
            ["CVE-2019-10906"],
            [ENTRY.model_copy(update={"until": date(2026, 5, 31)})],
            Allowance(False, "allow entry cve-2019-10906 expired on 2026-05-31"),
        ),
        (["CVE-2019-10906"], [], Allowance(False)),
    ],
)
def test_an_entry_names_a_finding_by_id_or_alias_until_its_date(
    names: list[str], allow: list[AllowedFinding], expected: Allowance
) -> None:
    assert allowance(names, allow, TODAY) == expected
