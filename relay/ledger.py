"""The ledger: a durable, append-only record of every deployment attempt and every release.

Each attempt (succeeded, rolled back, rejected at approval, failed) becomes one `Record` in
Relay's database (`relay.database`: a SQLite file, usually `$RELAY_HOME/ledger.db`, or the
PostgreSQL database a fleet shares); so does a service a release left as it was
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

The queries are SQLAlchemy Core, the same on both engines. On SQLite (WAL mode, a 30 s busy
timeout) several processes of one machine append at once; on PostgreSQL, several machines do. A
`Ledger` holds only where its database is (engines are per process, `relay.database`), so it is
safe to share between threads and to pickle into other processes. The schema and its migrations
are `relay.database`'s.

What the CLI prints from records, and drift against a platform, is in `relay.status`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator, model_validator
from sqlalchemy.engine import Connection, Engine

from relay.database import (
    SCHEMA_VERSION,
    analysis_windows,
    arrivals,
    guarded,
    open_database,
    records,
    releases,
    url_of,
)
from relay.errors import NotApproved, RolledBack, TerminalError, WatchFailed
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


_GOOD_VALUES = [outcome.value for outcome in _GOOD]
# Record field -> column; `commit` is a keyword in SQL.
_COLUMNS = {name: ("commit_sha" if name == "commit" else name) for name in Record.model_fields}
_RECORD_COLUMNS = [records.c[column] for column in _COLUMNS.values()]


class Ledger:
    """The deployment ledger in Relay's database at `where` (a SQLite path, or a database URL
    such as ``postgresql+psycopg://relay@db:5432/relay``), created on first use."""

    def __init__(self, where: Path | str) -> None:
        self.where = where
        self.url = url_of(where)
        self._engine()  # created and migrated now: a bad location fails here, not mid-deploy

    @property
    def path(self) -> Path | None:
        """The SQLite file, for messages; None on a database server."""
        return None if "://" in str(self.where) else Path(self.where)

    def append(self, record: Record) -> Record:
        """Store `record` (whose id must be None) and return it with its id."""
        if record.id is not None:
            raise TerminalError(
                f"record.id: {record.id} is already set; the ledger is append-only, "
                "so append a new Record (id=None) instead"
            )
        values = record.model_dump(mode="json", exclude={"id"})
        row = {_COLUMNS[name]: value for name, value in values.items()} | {"digest": record.digest}
        with self._begin() as conn:
            key = conn.execute(sa.insert(records).values(row)).inserted_primary_key
        return record.model_copy(update={"id": key[0] if key else None})

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
        where = [records.c.app == app]
        if service is not None:
            where.append(records.c.service == service)
        if environment is not None:
            where.append(records.c.environment == environment)
        return self._select(*where, limit=limit)

    def current(self, app: str, environment: str, service: str) -> Record | None:
        """The latest SUCCEEDED record there: what should be serving."""
        return self._first(*_target(app, environment, service), _succeeded())

    def verified_in(self, app: str, environment: str, service: str, digest: str) -> Record | None:
        """The latest record of exactly `digest` there, when it SUCCEEDED or a later release
        kept it UNCHANGED (the promotion gate).

        A later failure of the same digest (its dependents' tests, a stopped release) takes the
        earlier success back: what passed once and then broke something is not verified.
        """
        latest = self._first(*_target(app, environment, service), records.c.digest == digest)
        return latest if latest is not None and latest.outcome in _GOOD else None

    def serving_since(
        self, app: str, environment: str, service: str, digest: str
    ) -> datetime | None:
        """Since when `digest` has served there without another version between (the soak
        clock): the first good record of its latest unbroken run of records; another digest's
        failed attempts do not break it, another digest's success does. None: it does not."""
        query = (
            sa.select(records.c.digest, records.c.outcome, records.c.ended_at)
            .where(*_target(app, environment, service))
            .order_by(records.c.id.desc())
        )
        since = None
        with self._connect() as conn:
            for row_digest, outcome, ended_at in conn.execute(query):
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
        current_digest = (
            sa.select(records.c.digest)
            .where(*_target(app, environment, service), _succeeded())
            .order_by(records.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        return self._first(
            *_target(app, environment, service), _succeeded(), records.c.digest != current_digest
        )

    def environments(self, app: str) -> list[tuple[str, str]]:
        """The (environment, service) pairs with records, in the order they first appeared."""
        query = (
            sa.select(records.c.environment, records.c.service)
            .where(records.c.app == app)
            .group_by(records.c.environment, records.c.service)
            .order_by(sa.func.min(records.c.id))
        )
        with self._connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]

    # -- releases ----------------------------------------------------------------------------

    def add_release(self, release: Release, repository: str) -> None:
        """Remember that `release.commit` makes `release` (again, when its content is known)."""
        row = {
            "id": release.id,
            "app": release.app,
            "commit_sha": release.commit,
            "repository": repository,
            "created_at": _now(),
            "body": release.model_dump_json(),
        }
        with self._begin() as conn:
            conn.execute(sa.insert(releases).values(row))

    def release_of_commit(self, app: str, commit: str) -> Release | None:
        """The release `commit` made most recently (a patched base image makes a new one)."""
        return self._release(releases.c.commit_sha == commit, app=app, newest=True)

    def find_release(self, app: str, ref: str) -> Release:
        """The release whose id starts with `ref` (at least 4 hex digits) or whose alias is `ref`.

        Raises:
            TerminalError: none, or several, match; the message lists what to write instead.
        """
        ids: list[str] = []
        if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            query = (
                sa.select(releases.c.id)
                .distinct()
                .where(releases.c.app == app, releases.c.id.startswith(ref, autoescape=True))
            )
            with self._connect() as conn:
                ids = [row[0] for row in conn.execute(query)]
        if not ids:
            ids = [r.id for r in self.releases(app, limit=1000) if r.alias == ref]
        if len(ids) == 1:
            found = self._release(releases.c.id == ids[0], app=app, newest=False)
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
        first_made = (
            sa.select(sa.func.min(releases.c.seq))
            .where(releases.c.app == app)
            .group_by(releases.c.id)
        )
        query = (
            sa.select(releases.c.body)
            .where(releases.c.seq.in_(first_made))
            .order_by(releases.c.seq.desc())
            .limit(limit)
        )
        with self._connect() as conn:
            return [Release.model_validate_json(row[0]) for row in conn.execute(query)]

    def release_repository(self, app: str, release_id: str) -> str | None:
        """Where the release's commit can be checked out (the repository it was made from)."""
        query = (
            sa.select(releases.c.repository)
            .where(releases.c.app == app, releases.c.id == release_id)
            .order_by(releases.c.seq.desc())
            .limit(1)
        )
        with self._connect() as conn:
            found = conn.execute(query).scalar()
        return str(found) if found is not None else None

    def arrive(
        self, app: str, environment: str, release: str, via: Via, flow_run_id: str | None
    ) -> Arrival:
        """Record that `release` now serves `environment` as a whole."""
        at = _now()
        row = {
            "app": app,
            "environment": environment,
            "release": release,
            "via": via.value,
            "flow_run_id": flow_run_id,
            "arrived_at": at,
        }
        with self._begin() as conn:
            conn.execute(sa.insert(arrivals).values(row))
        return Arrival(release, environment, via, datetime.fromisoformat(at), flow_run_id)

    def arrivals(self, app: str, environment: str | None = None) -> list[Arrival]:
        """When each release arrived where, oldest first."""
        c = arrivals.c
        query = sa.select(c.release, c.environment, c.via, c.arrived_at, c.flow_run_id).where(
            c.app == app
        )
        if environment is not None:
            query = query.where(c.environment == environment)
        with self._connect() as conn:
            rows = conn.execute(query.order_by(c.seq)).all()
        return [
            Arrival(row[0], row[1], Via(row[2]), datetime.fromisoformat(row[3]), row[4])
            for row in rows
        ]

    # -- canary analysis windows ---------------------------------------------------------------

    def add_window(self, window: Window) -> None:
        """Keep one judged canary step (see `relay.replay`)."""
        row = {
            "app": window.app,
            "environment": window.environment,
            "service": window.service,
            "run_id": window.run_id,
            "deploy_run_id": window.deploy_run_id,
            "step": window.step,
            "ended_at": window.ended_at.isoformat(),
            "body": window.model_dump_json(),
        }
        with self._begin() as conn:
            conn.execute(sa.insert(analysis_windows).values(row))

    def windows_of_run(self, run: str) -> list[Window]:
        """The windows of one canary, named by its run id or its deployment's (a prefix of at
        least 8 characters will do), in step order.

        Raises:
            TerminalError: the prefix names windows of several runs.
        """
        c = analysis_windows.c
        if len(run) >= 8:
            named = sa.or_(
                c.run_id.startswith(run, autoescape=True),
                c.deploy_run_id.startswith(run, autoescape=True),
            )
        else:
            named = sa.or_(c.run_id == run, c.deploy_run_id == run)
        with self._connect() as conn:
            rows = conn.execute(sa.select(c.run_id, c.body).where(named).order_by(c.seq)).all()
        runs = sorted({row[0] for row in rows})
        if len(runs) > 1:
            listed = ", ".join(r[:13] for r in runs)
            raise TerminalError(f"{run!r} names several canary runs ({listed}); write more of it")
        return [Window.model_validate_json(row[1]) for row in rows]

    def windows(self, app: str, environment: str, service: str) -> list[Window]:
        """The windows of the service's latest judged canary in the environment."""
        c = analysis_windows.c
        query = (
            sa.select(c.run_id)
            .where(c.app == app, c.environment == environment, c.service == service)
            .order_by(c.seq.desc())
            .limit(1)
        )
        with self._connect() as conn:
            run = conn.execute(query).scalar()
        return self.windows_of_run(run) if run else []

    def _release(self, *where: Any, app: str, newest: bool) -> Release | None:
        order = releases.c.seq.desc() if newest else releases.c.seq
        query = (
            sa.select(releases.c.body).where(releases.c.app == app, *where).order_by(order).limit(1)
        )
        with self._connect() as conn:
            body = conn.execute(query).scalar()
        return Release.model_validate_json(body) if body else None

    def _first(self, *where: Any) -> Record | None:
        found = self._select(*where, limit=1)
        return found[0] if found else None

    def _select(self, *where: Any, limit: int) -> list[Record]:
        query = sa.select(*_RECORD_COLUMNS).where(*where).order_by(records.c.id.desc()).limit(limit)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [Record.model_validate(dict(zip(_COLUMNS, row, strict=True))) for row in rows]

    def _engine(self) -> Engine:
        return open_database(self.where)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection for reading; database errors become Relay's (`relay.database.guarded`)."""
        with guarded(self.url), self._engine().connect() as conn:
            yield conn

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction, committed at the end of the block."""
        with guarded(self.url), self._engine().begin() as conn:
            yield conn


def _target(app: str, environment: str, service: str) -> tuple[Any, ...]:
    return (
        records.c.app == app,
        records.c.environment == environment,
        records.c.service == service,
    )


def _succeeded() -> Any:
    return records.c.outcome == Outcome.SUCCEEDED.value


def _now() -> str:
    return datetime.now(UTC).isoformat()


def short_digest(digest: str) -> str:
    """`sha256:` and the first 12 hex digits: 19 characters."""
    return digest[:19]
