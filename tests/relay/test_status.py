"""`relay status`, `relay history` and drift as pure functions over records."""

from __future__ import annotations

from datetime import timedelta

from relay.ledger import Outcome
from relay.status import drift, format_history, format_status
from tests.relay.records import T0, digest, record

# --- drift -----------------------------------------------------------------------------------


def test_drift_is_empty_when_the_platform_runs_what_the_ledger_says() -> None:
    assert drift({("dev", "orders"): record("a")}, {("dev", "orders"): digest("a")}) == []


def test_drift_reports_every_disagreement() -> None:
    ledger_current = {
        ("dev", "orders"): record("a"),
        ("staging", "orders"): record("b", environment="staging"),
    }
    platform = {("dev", "orders"): digest("c"), ("dev", "payments"): digest("d")}

    assert drift(ledger_current, platform) == [
        "dev/orders: the ledger says sha256:aaaaaaaaaaaa… (commit aaaaaaaaaaaa) but the platform "
        "runs sha256:cccccccccccc…; redeploy or investigate a manual change",
        "dev/payments: the platform runs sha256:dddddddddddd… but the ledger has no successful "
        "deployment there; deploy it through Relay or remove it",
        "staging/orders: the ledger says sha256:bbbbbbbbbbbb… (commit bbbbbbbbbbbb) but the "
        "platform runs nothing; redeploy or investigate a manual removal",
    ]


# --- tables ----------------------------------------------------------------------------------


def test_format_status_shows_one_line_per_current_record() -> None:
    rows = [
        record("a", approver=None),
        record("b", environment="prod", approver="alice", ended_at=T0 + timedelta(minutes=5)),
    ]

    lines = format_status(rows).splitlines()

    header = ["ENVIRONMENT", "SERVICE", "DIGEST", "COMMIT", "SINCE", "(UTC)", "APPROVER"]
    assert lines[0].split() == header
    assert lines[1].split() == [
        "dev",
        "orders",
        "sha256:aaaaaaaaaaaa",
        "aaaaaaaaaaaa",
        "2026-05-09",
        "07:32",
        "-",
    ]
    assert lines[2].split()[-4:] == ["bbbbbbbbbbbb", "2026-05-09", "07:35", "alice"]
    assert lines[1].index("sha256:") == lines[0].index("DIGEST")  # columns line up
    assert format_status([]).split() == lines[0].split()


def test_format_history_shows_the_first_line_of_the_reason() -> None:
    records = [
        record(
            "b",
            outcome=Outcome.ROLLED_BACK,
            strategy="canary",
            approver="bob",
            reason="error rate 12% > 5% at step 2\nfull analysis: ...",
        ),
        record("a"),
    ]

    lines = format_history(records).splitlines()

    assert len(lines) == 3
    assert lines[0].split()[:3] == ["WHEN", "(UTC)", "ENVIRONMENT"]
    assert lines[1].split()[:10] == [
        "2026-05-09",
        "07:32",
        "dev",
        "rolled_back",
        "sha256:bbbbbbbbbbbb",
        "bbbbbbbbbbbb",
        "canary",
        "bob",
        "-",
        "error",
    ]
    assert lines[1].endswith("error rate 12% > 5% at step 2")
    assert "full analysis" not in format_history(records)
    assert lines[2].split()[3:] == ["succeeded", "sha256:aaaaaaaaaaaa", "aaaaaaaaaaaa"] + [
        "rolling",
        "-",
        "-",
    ]
