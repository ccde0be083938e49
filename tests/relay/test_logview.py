"""What `relay logs` prints beside each line: the version that wrote it (relay/status.py)."""

from __future__ import annotations

import pytest

from relay.status import format_log_lines, parse_since, version_of_stream
from tests.relay.records import digest, record

STREAM = f"shop-dev-orders-green-{'a' * 12}"


def test_since_takes_a_number_and_a_unit() -> None:
    assert [parse_since(t) for t in ("90s", "10m", "2h", "1d")] == [90, 600, 7200, 86400]
    for bad in ("10", "m", "0m", "ten minutes", "-5m"):
        with pytest.raises(ValueError, match="such as 90s, 10m, 2h or 1d"):
            parse_since(bad)


def test_a_stream_names_its_slot_digest_and_the_commit_the_ledger_knows() -> None:
    known = [record("b"), record("a")]
    assert version_of_stream(STREAM, known) == f"green {'a' * 12} (commit {'a' * 12})"
    assert version_of_stream(STREAM, [record("b")]) == f"green {'a' * 12}"
    assert digest("a")[7:19] == "a" * 12


def test_each_line_is_shown_with_its_time_and_version() -> None:
    lines = [{"timestamp": 1_765_000_000_000, "stream": STREAM, "message": "started\n"}]
    assert format_log_lines(lines, [record("a")]) == (
        f"2025-12-06 05:46:40  green {'a' * 12} (commit {'a' * 12})  started"
    )
