"""Relay's own database: the ledger and the webhook deliveries, on SQLite or on PostgreSQL.

One schema (the tables below, SQLAlchemy Core) serves both engines. The embedded default is a
SQLite file (`$RELAY_HOME/ledger.db`); several machines share one PostgreSQL database, named by a
SQLAlchemy URL (`RELAY_DATABASE_URL=postgresql+psycopg://relay@db.internal:5432/relay`), since
SQLite on a network file system cannot be locked reliably.

The schema version is kept in the database (SQLite: `PRAGMA user_version`; PostgreSQL: the
`relay_schema` table) and `open_database` takes any older database to the current version on
first use, under a lock, so processes racing to open a new database agree:

- a new database gets every table at once (`metadata.create_all`), on either engine;
- a SQLite ledger made by an older Relay replays the statements that built it (`_SQLITE_HISTORY`,
  versions 1 to 5), then the steps that came after, which are written for both engines.

The ledger's tables are append-only on both engines: triggers refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL). Deliveries are a work queue, and change state.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from relay.errors import TerminalError, TransientError

__all__ = [
    "SCHEMA_VERSION",
    "APPEND_ONLY",
    "metadata",
    "records",
    "releases",
    "arrivals",
    "analysis_windows",
    "webhook_deliveries",
    "open_database",
    "shown",
]

metadata = sa.MetaData()

# Timestamps are ISO 8601 text (UTC), as the first ledgers stored them; rows are ordered by their
# sequence column, never by time.
records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app", sa.Text, nullable=False),
    sa.Column("service", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("image", sa.Text, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("commit_sha", sa.Text, nullable=False),
    sa.Column("tree", sa.Text, nullable=False),
    sa.Column("strategy", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("approver", sa.Text),
    sa.Column("comment", sa.Text),
    sa.Column("release", sa.Text),
    sa.Column("flow_run_id", sa.Text),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("ended_at", sa.Text, nullable=False),
    sa.Column("config", sa.Text),
    sa.Column("committed_at", sa.Text),
    sa.Column("settings", sa.Text),
    sa.Index("records_by_target", "app", "environment", "service", "outcome", "id"),
    sqlite_autoincrement=True,
)

# One row each time a commit makes a release: the same content (same id) from another commit is
# another row, so "the release of commit C" is a lookup by commit.
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("app", sa.Text, nullable=False),
    sa.Column("commit_sha", sa.Text, nullable=False),
    sa.Column("repository", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("releases_by_id", "app", "id", "seq"),
    sa.Index("releases_by_commit", "app", "commit_sha", "seq"),
    sqlite_autoincrement=True,
)

arrivals = sa.Table(
    "arrivals",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("release", sa.Text, nullable=False),
    sa.Column("via", sa.Text, nullable=False),
    sa.Column("flow_run_id", sa.Text),
    sa.Column("arrived_at", sa.Text, nullable=False),
    sa.Index("arrivals_by_environment", "app", "environment", "seq"),
    sqlite_autoincrement=True,
)

# Each judged canary step (relay.replay.Window), kept beside the deployment it judged.
analysis_windows = sa.Table(
    "analysis_windows",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("app", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("service", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("deploy_run_id", sa.Text),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("ended_at", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("analysis_windows_by_target", "app", "environment", "service", "seq"),
    sa.Index("analysis_windows_by_run", "run_id"),
    sqlite_autoincrement=True,
)

# A forge's delivery, stored before it is answered (202); a dispatcher of whichever receiver
# claims it first (`claimed_until` is the claim's lease) reads relay.yaml at the commit and
# creates the Prefect run. The id is `<forge>:<delivery id>`, so a redelivery that reaches any
# receiver sharing the database is a duplicate.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("state", sa.Text, nullable=False),  # queued | started | ignored | failed
    sa.Column("trigger", sa.Text, nullable=False),  # JSON: what the forge asked for
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_until", sa.Float),
    sa.Column("environment", sa.Text),
    sa.Column("flow_run_id", sa.Text),
    sa.Column("reason", sa.Text),  # why it was ignored or failed, or the last retry's cause
    sa.Column("updated_at", sa.Float),
    sa.Index("webhook_deliveries_by_state", "state", "claimed_until"),
)

APPEND_ONLY = ("records", "releases", "arrivals", "analysis_windows")

# The statements that built SQLite ledgers before this module: version i -> i + 1. Never edit.
_SQLITE_HISTORY: tuple[tuple[str, ...], ...] = (
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


def _created(table: sa.Table) -> tuple[ExecutableDDLElement, ...]:
    return (CreateTable(table), *(CreateIndex(index) for index in table.indexes))


# Steps after the SQLite history, for both engines: version len(_SQLITE_HISTORY) + i -> + i + 1.
# Each is DDL that SQLAlchemy writes for the engine at hand. Append new steps; never edit old ones.
_STEPS: tuple[tuple[ExecutableDDLElement, ...], ...] = (_created(webhook_deliveries),)
SCHEMA_VERSION = len(_SQLITE_HISTORY) + len(_STEPS)

_TIMEOUT_S = 30  # how long a SQLite writer waits for another one's lock
_CONNECT_TIMEOUT_S = 10  # a PostgreSQL server that does not answer: a retry, not a hang
_PG_LOCK = 0x52454C4159  # "RELAY": the advisory lock migrations take on PostgreSQL

_PG_GUARD = """
CREATE OR REPLACE FUNCTION relay_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the ledger is append-only'; END $$
"""


def url_of(where: Path | str) -> str:
    """A database URL for `where`: a URL as it is, a path as a SQLite file."""
    text = str(where)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


def shown(url: str) -> str:
    """The URL as it may be printed: without its password."""
    return sa.make_url(url).render_as_string(hide_password=True)


_engines: dict[tuple[int, str], Engine] = {}
_ready: set[tuple[int, str]] = set()
_lock = threading.Lock()


def open_database(where: Path | str) -> Engine:
    """The engine of the database at `where` (a SQLite path or a URL), migrated to the current
    schema. One engine per database per process: they are cached, and made again after a fork.

    Raises:
        TerminalError: the URL is not one Relay can use, or the schema is newer than this Relay.
        TransientError: the database did not answer.
    """
    url = url_of(where)
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _engine(url)
        if key not in _ready:
            with guarded(url):
                _migrate(engine, url)
            _ready.add(key)
    return engine


def _engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise TerminalError(
            f"{url!r} is not a database URL ({exc}); write a SQLite path, or "
            "postgresql+psycopg://USER@HOST:5432/DATABASE"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TerminalError(f"{path}: cannot create its directory ({exc})") from None
        # Each use opens its own short-lived connection, as the ledger always did: safe to share
        # between threads and processes; WAL lets readers go on while one process writes.
        return sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": _TIMEOUT_S})
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(
            parsed,
            pool_pre_ping=True,  # a server restarted under a long-lived worker is found out
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": _CONNECT_TIMEOUT_S},
        )
    raise TerminalError(
        f"{shown(url)}: Relay's database is SQLite or PostgreSQL; write a SQLite path or "
        "postgresql+psycopg://USER@HOST:5432/DATABASE"
    )


@contextmanager
def guarded(url: str) -> Iterator[None]:
    """Database errors as Relay's: a lock or an unreachable server is worth a retry
    (TransientError), anything else names the database and what to check (TerminalError)."""
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig)
        if "locked" in text or "could not connect" in text or "connection" in text.lower():
            raise TransientError(f"{shown(url)}: {text.strip()}; retry") from exc
        raise TerminalError(_explained(url, text)) from exc
    except DBAPIError as exc:
        raise TerminalError(_explained(url, str(exc.orig).strip())) from exc
    except sqlite3.DatabaseError as exc:  # from the driver's own connection (migrations)
        if "locked" in str(exc):
            raise TransientError(f"{shown(url)}: {exc}; retry") from exc
        raise TerminalError(_explained(url, str(exc))) from exc


def _explained(url: str, text: str) -> str:
    return (
        f"{shown(url)}: {text}; check that it is a Relay database on writable storage, or point "
        "RELAY_DATABASE_URL (or RELAY_LEDGER, RELAY_HOME) elsewhere"
    )


def _migrate(engine: Engine, url: str) -> None:
    if engine.dialect.name == "sqlite":
        _migrate_sqlite(engine, url)
    else:
        _migrate_postgres(engine, url)


def _migrate_sqlite(engine: Engine, url: str) -> None:
    """Under SQLite's write lock (BEGIN IMMEDIATE), taken before the version is read, on the
    driver's connection: SQLAlchemy's own transactions would begin too late to hold it."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.isolation_level = None  # this code says when transactions begin and end
        _use_wal(raw)
        raw.execute("BEGIN IMMEDIATE")
        try:
            version = int(raw.execute("PRAGMA user_version").fetchone()[0])
            _refuse_newer(url, version)
            for statement in _statements(version, engine.dialect):
                raw.execute(statement)
            if version < SCHEMA_VERSION:
                raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise


def _statements(version: int, dialect: sa.Dialect) -> list[str]:
    """The SQL that takes a SQLite database from `version` to SCHEMA_VERSION."""
    if version == 0:
        ddl = [e for table in metadata.sorted_tables for e in _created(table)]
        return [str(e.compile(dialect=dialect)) for e in ddl] + [
            f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"
            for table in APPEND_ONLY
            for verb in ("update", "delete")
        ]
    history = [s for step in _SQLITE_HISTORY[version:] for s in step]
    done = max(version, len(_SQLITE_HISTORY)) - len(_SQLITE_HISTORY)
    steps = [str(e.compile(dialect=dialect)) for step in _STEPS[done:] for e in step]
    return history + steps


def _migrate_postgres(engine: Engine, url: str) -> None:
    """Under a transaction-scoped advisory lock, so racing processes migrate one at a time."""
    with engine.begin() as tx:
        tx.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        tx.exec_driver_sql("CREATE TABLE IF NOT EXISTS relay_schema (version INTEGER NOT NULL)")
        version = tx.execute(sa.text("SELECT max(version) FROM relay_schema")).scalar() or 0
        _refuse_newer(url, version)
        if version == 0:
            _create_all_postgres(tx)
        else:
            for step in _STEPS[version - len(_SQLITE_HISTORY) :]:
                for element in step:
                    tx.execute(element)
        if version < SCHEMA_VERSION:
            tx.exec_driver_sql("DELETE FROM relay_schema")
            tx.execute(
                sa.text("INSERT INTO relay_schema (version) VALUES (:v)"), {"v": SCHEMA_VERSION}
            )


def _create_all_postgres(conn: Connection) -> None:
    """A new database: every table at the current version, the ledger's made append-only."""
    metadata.create_all(conn)
    conn.exec_driver_sql(_PG_GUARD)
    for table in APPEND_ONLY:
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION relay_append_only()"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION relay_append_only()"
        )


def _refuse_newer(url: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise TerminalError(
            f"{shown(url)}: schema version {version} is newer than this Relay understands "
            f"({SCHEMA_VERSION}); upgrade Relay"
        )


def _use_wal(raw: object) -> None:
    """Switch the file to WAL mode, which persists in it; a no-op once done.

    The switch needs an exclusive lock, and SQLite asks for it without waiting through the busy
    timeout: when several processes open a new file at once, the losers retry here.
    """
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            raw.execute("PRAGMA journal_mode=WAL")  # type: ignore[attr-defined]
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)
