"""What the ledger's records say, in the words of `relay status`, `relay history`, drift and
`relay logs` (which version wrote each line).

Pure functions over `relay.ledger.Record`s: the ledger stores facts, this module shows them
and compares them with what a platform reports running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from relay.ledger import Record, short_digest
from relay.tables import table

__all__ = [
    "drift",
    "format_history",
    "format_log_lines",
    "format_status",
    "parse_since",
    "version_of_stream",
]


def drift(
    ledger_current: Mapping[tuple[str, str], Record],
    platform: Mapping[tuple[str, str], str],
) -> list[str]:
    """Where the platform disagrees with the ledger, one message per (environment, service).

    `ledger_current` holds `Ledger.current` per (environment, service); `platform` holds the
    digest (`sha256:...`) the platform reports running there. Empty when they agree.
    """
    messages: list[str] = []
    for environment, service in sorted(ledger_current.keys() | platform.keys()):
        record = ledger_current.get((environment, service))
        running = platform.get((environment, service))
        where = f"{environment}/{service}"
        if record is not None and running is not None and record.digest != running:
            messages.append(
                f"{where}: the ledger says {_said(record)} but the platform runs "
                f"{_running(running)}; redeploy or investigate a manual change"
            )
        elif record is None and running is not None:
            messages.append(
                f"{where}: the platform runs {_running(running)} but the ledger has no "
                "successful deployment there; deploy it through Relay or remove it"
            )
        elif record is not None and running is None:
            messages.append(
                f"{where}: the ledger says {_said(record)} but the platform runs nothing; "
                "redeploy or investigate a manual removal"
            )
    return messages


def _running(found: str) -> str:
    """A digest shortened (`sha256:1a2b…`); a reference by tag (a hand edit) in full."""
    return f"{short_digest(found)}…" if found.startswith("sha256:") else found


def _said(record: Record) -> str:
    return f"{short_digest(record.digest)}… (commit {record.commit[:12]})"


def format_status(rows: Iterable[Record]) -> str:
    """`relay status`: one line per current record (see `Ledger.current`)."""
    headers = ("ENVIRONMENT", "SERVICE", "DIGEST", "COMMIT", "SINCE (UTC)", "APPROVER")
    cells = [
        (
            r.environment,
            r.service,
            short_digest(r.digest),
            r.commit[:12],
            _minute(r.ended_at),
            r.approver or "-",
        )
        for r in rows
    ]
    return table(headers, cells)


def format_history(records: Iterable[Record]) -> str:
    """`relay history SERVICE`: one line per attempt, in the order given (newest first)."""
    headers = ["WHEN (UTC)", "ENVIRONMENT", "OUTCOME", "DIGEST", "COMMIT", "STRATEGY"]
    headers += ["APPROVER", "CONFIG", "REASON OR COMMENT"]
    cells = [
        (
            _minute(r.ended_at),
            r.environment,
            r.outcome.value,
            short_digest(r.digest),
            r.commit[:12],
            r.strategy,
            r.approver or "-",
            _short_config(r.config),
            next(iter((r.reason or r.comment or "").splitlines()), ""),
        )
        for r in records
    ]
    return table(headers, cells)


def _short_config(config: str | None) -> str:
    """`dev-config@0a1b2c3d-...` -> `dev-config@0a1b2c3d`: enough to see a rotation."""
    if not config:
        return "-"
    return ",".join(
        part[: part.find("@") + 9] if "@" in part else part for part in config.split(",")
    )


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """Seconds in `10m`, `90s`, `2h`, `1d`.

    Raises:
        ValueError: what to write instead.
    """
    number, unit = text[:-1], text[-1:]
    if unit not in SINCE_UNITS or not number.isdigit() or int(number) == 0:
        raise ValueError(f"--since {text!r}: write a number and a unit, such as 90s, 10m, 2h or 1d")
    return int(number) * SINCE_UNITS[unit]


def version_of_stream(stream: str, records: Iterable[Record]) -> str:
    """Which version wrote a stream (`<container>-<short digest>`): its slot, short digest
    and, when the ledger knows the digest, its commit."""
    container, _, short = stream.rpartition("-")
    slot = container.rpartition("-")[2] or "?"
    commit = next((r.commit[:12] for r in records if r.digest[7:19] == short), "")
    return f"{slot} {short}" + (f" (commit {commit})" if commit else "")


def format_log_lines(lines: Iterable[Mapping[str, object]], records: list[Record]) -> str:
    """`relay logs`: each line with its time (UTC) and the version that wrote it."""
    shown = []
    for line in lines:
        when = datetime.fromtimestamp(int(str(line["timestamp"])) / 1000, UTC)
        version = version_of_stream(str(line["stream"]), records)
        shown.append(f"{when:%Y-%m-%d %H:%M:%S}  {version}  {str(line['message']).rstrip()}")
    return "\n".join(shown)
