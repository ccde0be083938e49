"""The ledger: a durable, append-only record of every deployment attempt and every release.

Each attempt (succeeded, rolled back, rejected at approval, failed) becomes one `Record` in a
SQLite database, usually `$RELAY_HOME/ledger.db`; so does a service a release left as it was
(unchanged: it already ran that digest with those settings). Records are facts: they are never
updated or deleted (triggers in the database refuse it), and a later record supersedes an
earlier one. The questions Relay asks of it:

* `current` - what should be serving: the latest SUCCEEDED record of a service there.
* `verified_in` - the promotion gate: did exactly this digest succeed in that environment?
* `previous_good` - the rollback target: the latest success of a different digest.

Releases (`relay.releases`) are stored beside the records: `add_release` each time a commit
makes one (the same content from another commit is the same release), `arrive` when a release
starts serving an environment as a whole. `release_of_commit`, `find_release`, `releases` and
`arrivals` read them back. Each judged canary step is kept too (`add_window`, `windows`,
`windows_of_run`), so a verdict can be explained and replayed (`relay.replay`).

The database runs in WAL mode with a 30 s busy timeout, so several worker processes can append
at once. Each call opens its own short-lived connection, so a `Ledger` is safe to share between
threads and to pickle into other processes. The schema version lives in `PRAGMA user_version`;
`_MIGRATIONS` takes any older file to the current version on first use.

What the CLI prints from records, and drift against a platform, is in `relay.status`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator, model_validator

from relay.errors import NotApproved, RolledBack, TerminalError, TransientError, WatchFailed
from relay.releases import Arrival, Release, Via
from relay.replay import Window

__all__ = [
    "SCHEMA_VERSION",
    "Ledger",
    "Outcome",
    "Record",
    "outcome_of",
    "short_digest",
]

_PINNED = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    # It took all traffic, then failed while watched (watch_seconds) and was put back.
    WATCH_FAILED = "watch_failed"
    REJECTED = "rejected"
    FAILED = "failed"
    # A release left the service as it was: it already ran that digest with those settings.
    # Not a deployment (delivery metrics leave it out), but it names the release.
    UNCHANGED = "unchanged"


def outcome_of(exc: BaseException) -> Outcome:
    """What an attempt that ended with `exc` is: put back (a canary or a train rolled back),
    rejected (a person, or no answer in time), or failed (anything else)."""
    if isinstance(exc, WatchFailed):
        return Outcome.WATCH_FAILED
    if isinstance(exc, RolledBack):
        return Outcome.ROLLED_BACK
    if isinstance(exc, NotApproved):
        return Outcome.REJECTED
    return Outcome.FAILED


# What still counts as verified: a success, or a later release that kept it as it was.
_GOOD = (Outcome.SUCCEEDED, Outcome.UNCHANGED)


class Record(BaseModel):
    """One deployment attempt of one service to one environment."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    app: str
    service: str
    environment: str
    image: str  # repository@sha256:<64 hex>: what ran, or would have run
    commit: str
    tree: str
    strategy: str  # rolling | blue_green | canary | rollback
    outcome: Outcome
    reason: str = ""  # why it failed, was rolled back or rejected
    approver: str | None = None
    comment: str | None = None
    release: str | None = None  # the release (relay.releases) this attempt belongs to
    config: str | None = None  # configuration secrets' versions: "dev-config@<version id>"
    settings: str | None = None  # the run settings' fingerprint (relay.releases.fingerprint)
    flow_run_id: str | None = None
    started_at: AwareDatetime
    ended_at: AwareDatetime
    # When the deployed commit was made: the start of its lead time (relay.dora).
    committed_at: AwareDatetime | None = None

    @field_validator("image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        if not _PINNED.fullmatch(image):
            raise ValueError(f"{image!r} is not pinned; use repository@sha256:<64 hex digits>")
        return image

    @field_validator("started_at", "ended_at", "committed_at")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        return moment.astimezone(UTC) if moment is not None else None

    @model_validator(mode="after")
    def _ordered(self) -> Record:
        if self.ended_at < self.started_at:
            raise ValueError(
                f"ended_at {self.ended_at.isoformat()} is before started_at "
                f"{self.started_at.isoformat()}; record when the attempt really ended"
            )
        return self

    @property
    def digest(self) -> str:
        """The content digest, `sha256:...`: the part of `image` after '@'."""
        return self.image.rpartition("@")[2]


# Each entry takes the file from version i to i + 1; append new entries, never edit old ones.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE records (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL, service TEXT NOT NULL, environment TEXT NOT NULL,
            image TEXT NOT NULL, digest TEXT NOT NULL, commit_sha TEXT NOT NULL,
            tree TEXT NOT NULL, strategy TEXT NOT NULL, outcome TEXT NOT NULL,
            reason TEXT NOT NULL, approver TEXT, comment TEXT, release TEXT, flow_run_id TEXT,
            started_at TEXT NOT NULL, ended_at TEXT NOT NULL)""",
        "CREATE INDEX records_by_target ON records (app, environment, service, outcome, id)",
        """CREATE TRIGGER records_no_update BEFORE UPDATE ON records
            BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        """CREATE TRIGGER records_no_delete BEFORE DELETE ON records
            BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    ),
    ("ALTER TABLE records ADD COLUMN config TEXT",),
    ("ALTER TABLE records ADD COLUMN committed_at TEXT",),
    (
        "ALTER TABLE records ADD COLUMN settings TEXT",
        # One row each time a commit makes a release: the same content (same id) from another
        # commit is another row, so "the release of commit C" is a lookup by commit.
        """CREATE TABLE releases (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL, app TEXT NOT NULL, commit_sha TEXT NOT NULL,
            repository TEXT NOT NULL, created_at TEXT NOT NULL, body TEXT NOT NULL)""",
        "CREATE INDEX releases_by_id ON releases (app, id, seq)",
        "CREATE INDEX releases_by_commit ON releases (app, commit_sha, seq)",
        """CREATE TABLE arrivals (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL, environment TEXT NOT NULL, release TEXT NOT NULL,
            via TEXT NOT NULL, flow_run_id TEXT, arrived_at TEXT NOT NULL)""",
        "CREATE INDEX arrivals_by_environment ON arrivals (app, environment, seq)",
        *(
            f"""CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
            BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"""
            for table in ("releases", "arrivals")
            for verb in ("update", "delete")
        ),
    ),
    (
        # Each judged canary step (relay.replay.Window), kept beside the deployment it judged.
        """CREATE TABLE analysis_windows (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL, environment TEXT NOT NULL, service TEXT NOT NULL,
            run_id TEXT NOT NULL, deploy_run_id TEXT, step INTEGER NOT NULL,
            ended_at TEXT NOT NULL, body TEXT NOT NULL)""",
        "CREATE INDEX analysis_windows_by_target ON analysis_windows "
        "(app, environment, service, seq)",
        "CREATE INDEX analysis_windows_by_run ON analysis_windows (run_id)",
        *(
            f"""CREATE TRIGGER analysis_windows_no_{verb} BEFORE {verb.upper()}
            ON analysis_windows BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"""
            for verb in ("update", "delete")
        ),
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

# Record field -> column; `commit` is a keyword in SQL.
_COLUMNS = {name: ("commit_sha" if name == "commit" else name) for name in Record.model_fields}
_SELECT = "SELECT " + ", ".join(_COLUMNS.values()) + " FROM records"
_SUCCEEDED = f"outcome = '{Outcome.SUCCEEDED.value}'"
_TIMEOUT_S = 30  # how long a writer waits for another one's lock
_TARGET = "app = ? AND environment = ? AND service = ?"


class Ledger:
    """The deployment ledger in the SQLite file at `path`, created on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            _use_wal(conn)
            _migrate(conn, self.path)

    def append(self, record: Record) -> Record:
        """Store `record` (whose id must be None) and return it with its id."""
        if record.id is not None:
            raise TerminalError(
                f"record.id: {record.id} is already set; the ledger is append-only, "
                "so append a new Record (id=None) instead"
            )
        values = record.model_dump(mode="json", exclude={"id"})
        columns = [_COLUMNS[name] for name in values]
        sql = (
            f"INSERT INTO records ({', '.join(columns)}, digest) "
            f"VALUES ({', '.join('?' * len(columns))}, ?)"
        )
        with self._connect() as conn, _transaction(conn):
            cursor = conn.execute(sql, [*values.values(), record.digest])
        return record.model_copy(update={"id": cursor.lastrowid})

    def history(
        self,
        app: str,
        service: str | None = None,
        environment: str | None = None,
        limit: int = 50,
    ) -> list[Record]:
        """The latest `limit` records of `app` (one service, environment if given), newest first."""
        if limit < 1:
            raise TerminalError(f"limit: {limit} must be at least 1")
        filters = {"app": app, "service": service, "environment": environment}
        used = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in used)
        return self._select(f"WHERE {where} ORDER BY id DESC LIMIT ?", [*used.values(), limit])

    def current(self, app: str, environment: str, service: str) -> Record | None:
        """The latest SUCCEEDED record there: what should be serving."""
        return self._first(f"WHERE {_TARGET} AND {_SUCCEEDED}", [app, environment, service])

    def verified_in(self, app: str, environment: str, service: str, digest: str) -> Record | None:
        """The latest record of exactly `digest` there, when it SUCCEEDED or a later release
        kept it UNCHANGED (the promotion gate).

        A later failure of the same digest (its dependents' tests, a stopped release) takes the
        earlier success back: what passed once and then broke something is not verified.
        """
        latest = self._first(f"WHERE {_TARGET} AND digest = ?", [app, environment, service, digest])
        return latest if latest is not None and latest.outcome in _GOOD else None

    def serving_since(
        self, app: str, environment: str, service: str, digest: str
    ) -> datetime | None:
        """Since when `digest` has served there without another version between (the soak
        clock): the first good record of its latest unbroken run of records; another digest's
        failed attempts do not break it, another digest's success does. None: it does not."""
        since = None
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT digest, outcome, ended_at FROM records WHERE {_TARGET} ORDER BY id DESC",
                [app, environment, service],
            )
            for row_digest, outcome, ended_at in rows:
                if row_digest == digest and outcome in _GOOD:
                    since = datetime.fromisoformat(ended_at)
                elif outcome == Outcome.SUCCEEDED or row_digest == digest:
                    break  # another version served before, or this one failed there
        return since

    def previous_good(self, app: str, environment: str, service: str) -> Record | None:
        """The latest SUCCEEDED record whose digest differs from `current`'s: the rollback target.

        None when nothing succeeded there yet, or only one digest ever did.
        """
        # One statement, so a concurrent append cannot slip between reading current and this.
        current_digest = f"SELECT digest FROM records WHERE {_TARGET} AND {_SUCCEEDED} "
        current_digest += "ORDER BY id DESC LIMIT 1"
        where = f"WHERE {_TARGET} AND {_SUCCEEDED} AND digest != ({current_digest})"
        return self._first(where, [app, environment, service] * 2)

    def environments(self, app: str) -> list[tuple[str, str]]:
        """The (environment, service) pairs with records, in the order they first appeared."""
        sql = (
            "SELECT environment, service FROM records WHERE app = ? "
            "GROUP BY environment, service ORDER BY MIN(id)"
        )
        with self._connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(sql, [app])]

    # -- releases ----------------------------------------------------------------------------

    def add_release(self, release: Release, repository: str) -> None:
        """Remember that `release.commit` makes `release` (again, when its content is known)."""
        body = release.model_dump_json()
        with self._connect() as conn, _transaction(conn):
            conn.execute(
                "INSERT INTO releases (id, app, commit_sha, repository, created_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [release.id, release.app, release.commit, repository, _now(), body],
            )

    def release_of_commit(self, app: str, commit: str) -> Release | None:
        """The release `commit` made most recently (a patched base image makes a new one)."""
        return self._release("WHERE app = ? AND commit_sha = ? ORDER BY seq DESC", [app, commit])

    def find_release(self, app: str, ref: str) -> Release:
        """The release whose id starts with `ref` (at least 4 hex digits) or whose alias is `ref`.

        Raises:
            TerminalError: none, or several, match; the message lists what to write instead.
        """
        ids: list[str] = []
        if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT DISTINCT id FROM releases WHERE app = ? AND id LIKE ?",
                    [app, f"{ref}%"],
                ).fetchall()
            ids = [row[0] for row in rows]
        if not ids:
            ids = [r.id for r in self.releases(app, limit=1000) if r.alias == ref]
        if len(ids) == 1:
            found = self._release("WHERE app = ? AND id = ? ORDER BY seq", [app, ids[0]])
            if found is not None:
                return found
        if len(ids) <= 1:
            raise TerminalError(
                f"no release of {app} matches {ref!r}; `relay releases` lists them (write an id "
                "of at least 4 hex digits, or an alias such as 2026-12-06-1a2b3c4)"
            )
        listed = ", ".join(i[:12] for i in sorted(ids))
        raise TerminalError(f"{ref!r} matches several releases of {app} ({listed}); write more")

    def releases(self, app: str, limit: int = 50) -> list[Release]:
        """The app's releases, newest first (each once, as first made)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT body FROM releases WHERE seq IN (SELECT MIN(seq) FROM releases "
                "WHERE app = ? GROUP BY id) ORDER BY seq DESC LIMIT ?",
                [app, limit],
            ).fetchall()
        return [Release.model_validate_json(row[0]) for row in rows]

    def release_repository(self, app: str, release_id: str) -> str | None:
        """Where the release's commit can be checked out (the repository it was made from)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT repository FROM releases WHERE app = ? AND id = ? ORDER BY seq DESC",
                [app, release_id],
            ).fetchone()
        return str(row[0]) if row else None

    def arrive(
        self, app: str, environment: str, release: str, via: Via, flow_run_id: str | None
    ) -> Arrival:
        """Record that `release` now serves `environment` as a whole."""
        at = _now()
        with self._connect() as conn, _transaction(conn):
            conn.execute(
                "INSERT INTO arrivals (app, environment, release, via, flow_run_id, arrived_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [app, environment, release, via.value, flow_run_id, at],
            )
        return Arrival(release, environment, via, datetime.fromisoformat(at), flow_run_id)

    def arrivals(self, app: str, environment: str | None = None) -> list[Arrival]:
        """When each release arrived where, oldest first."""
        sql = (
            "SELECT release, environment, via, arrived_at, flow_run_id FROM arrivals WHERE app = ?"
        )
        params: list[Any] = [app]
        if environment is not None:
            sql, params = sql + " AND environment = ?", [*params, environment]
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [
            Arrival(row[0], row[1], Via(row[2]), datetime.fromisoformat(row[3]), row[4])
            for row in rows
        ]

    # -- canary analysis windows ---------------------------------------------------------------

    def add_window(self, window: Window) -> None:
        """Keep one judged canary step (see `relay.replay`)."""
        with self._connect() as conn, _transaction(conn):
            conn.execute(
                "INSERT INTO analysis_windows (app, environment, service, run_id, "
                "deploy_run_id, step, ended_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    window.app,
                    window.environment,
                    window.service,
                    window.run_id,
                    window.deploy_run_id,
                    window.step,
                    window.ended_at.isoformat(),
                    window.model_dump_json(),
                ],
            )

    def windows_of_run(self, run: str) -> list[Window]:
        """The windows of one canary, named by its run id or its deployment's (a prefix of at
        least 8 characters will do), in step order.

        Raises:
            TerminalError: the prefix names windows of several runs.
        """
        pattern = f"{run}%" if len(run) >= 8 else run
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT run_id, body FROM analysis_windows WHERE run_id LIKE ? "
                "OR deploy_run_id LIKE ? ORDER BY seq",
                [pattern, pattern],
            ).fetchall()
        runs = sorted({row[0] for row in rows})
        if len(runs) > 1:
            listed = ", ".join(r[:13] for r in runs)
            raise TerminalError(f"{run!r} names several canary runs ({listed}); write more of it")
        return [Window.model_validate_json(row[1]) for row in rows]

    def windows(self, app: str, environment: str, service: str) -> list[Window]:
        """The windows of the service's latest judged canary in the environment."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT run_id FROM analysis_windows WHERE app = ? AND environment = ? "
                "AND service = ? ORDER BY seq DESC LIMIT 1",
                [app, environment, service],
            ).fetchone()
        return self.windows_of_run(row[0]) if row else []

    def _release(self, where: str, params: Sequence[Any]) -> Release | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT body FROM releases {where} LIMIT 1", params).fetchone()
        return Release.model_validate_json(row[0]) if row else None

    def _first(self, where: str, params: Sequence[Any]) -> Record | None:
        found = self._select(f"{where} ORDER BY id DESC LIMIT 1", params)
        return found[0] if found else None

    def _select(self, clause: str, params: Sequence[Any]) -> list[Record]:
        with self._connect() as conn:
            rows = conn.execute(f"{_SELECT} {clause}", params).fetchall()
        return [Record.model_validate(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise TerminalError(
                f"{self.path}: cannot open the ledger ({exc}); check that the directory exists "
                "and is writable"
            ) from exc
        with closing(conn):
            try:
                yield conn
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise TransientError(
                        f"{self.path}: the ledger is locked by another process ({exc}); retry"
                    ) from exc
                raise TerminalError(
                    f"{self.path}: {exc}; check that the file is a Relay ledger on writable "
                    "storage, or point RELAY_LEDGER (or RELAY_HOME) elsewhere"
                ) from exc


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front (waiting up to the timeout)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode, which persists in it; a no-op once done.

    The switch needs an exclusive lock, and SQLite asks for it without waiting through the busy
    timeout: when several processes open a new file at once, the losers retry here.
    """
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Take the file to SCHEMA_VERSION; under the write lock, so racing processes agree."""
    with _transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise TerminalError(
                f"{path}: schema version {version} is newer than this Relay understands "
                f"({SCHEMA_VERSION}); upgrade Relay"
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def short_digest(digest: str) -> str:
    """`sha256:` and the first 12 hex digits: 19 characters."""
    return digest[:19]
