"""The ledger against real SQLite files and a real PostgreSQL database (a throwaway cluster,
`postgres_url`): every query test runs on both engines."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from relay.database import _SQLITE_HISTORY as _MIGRATIONS
from relay.database import open_database
from relay.errors import NotApproved, RolledBack, StageFailed, TerminalError
from relay.ledger import (
    SCHEMA_VERSION,
    Ledger,
    Outcome,
    outcome_of,
)
from relay.registry import ImageRef
from relay.releases import Release, ServiceImage, Via
from relay.status import format_history
from tests.relay.records import T0, digest, record


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if request.param == "postgresql":
        return Ledger(request.getfixturevalue("postgres_url"))
    return Ledger(tmp_path / "ledger.db")


def _refused(ledger: Ledger, *statements: str) -> None:
    """Each statement, run straight on the database, is refused as the ledger is append-only."""
    for statement in statements:
        with (
            open_database(ledger.where).connect() as conn,
            pytest.raises(sa.exc.DBAPIError, match="append-only"),
        ):
            conn.exec_driver_sql(statement)


# --- storage ---------------------------------------------------------------------------------


def test_append_reads_back_equal_with_aware_utc_datetimes(ledger: Ledger) -> None:
    plus_two = timezone(timedelta(hours=2))
    original = record(
        outcome=Outcome.REJECTED,
        reason="approval timed out\nafter 3600 s",
        approver="alice",
        comment="not today",
        release="rel-1",
        flow_run_id="run-1",
        started_at=datetime(2026, 5, 9, 9, 30, 0, 123456, tzinfo=plus_two),
        ended_at=datetime(2026, 5, 9, 9, 31, tzinfo=plus_two),
    )

    stored = ledger.append(original)

    assert stored.id is not None
    assert stored.model_copy(update={"id": None}) == original
    assert ledger.history("shop") == [stored]
    read = ledger.history("shop")[0]
    assert read.started_at == datetime(2026, 5, 9, 7, 30, 0, 123456, tzinfo=UTC)
    assert read.started_at.utcoffset() == timedelta(0)
    assert read.digest == digest("a")


def test_a_second_ledger_object_sees_the_records(tmp_path: Path) -> None:
    path = tmp_path / "home" / "ledger.db"
    first = Ledger(path).append(record("a"))

    assert Ledger(path).history("shop") == [first]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_records_cannot_be_updated_or_deleted(ledger: Ledger) -> None:
    ledger.append(record("a"))
    _refused(ledger, "UPDATE records SET outcome = 'failed'", "DELETE FROM records")
    if ledger.path is None:  # PostgreSQL: TRUNCATE skips row triggers, a statement one refuses
        _refused(ledger, "TRUNCATE records")
    assert len(ledger.history("shop")) == 1


def test_append_refuses_a_record_that_already_has_an_id(ledger: Ledger) -> None:
    stored = ledger.append(record("a"))
    with pytest.raises(TerminalError, match=r"record.id: 1 is already set; .*append a new Record"):
        ledger.append(stored)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(TerminalError, match="schema version 99 is newer .*; upgrade Relay"):
        Ledger(path)


def test_a_file_that_is_not_a_database_is_a_terminal_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_text("not a database, just text that is long enough to have a header" * 10)
    with pytest.raises(
        TerminalError, match="file is not a database; check that it is a Relay database"
    ):
        Ledger(path)


def _append_many(path: Path, worker: int, start: Any) -> None:
    start.wait()
    ledger = Ledger(path)  # each process opens the (possibly not yet created) file itself
    for n in range(25):
        ledger.append(record("a", flow_run_id=f"{worker}-{n}"))


def test_concurrent_appends_from_four_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [
        context.Process(target=_append_many, args=(path, worker, start)) for worker in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)

    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    records = Ledger(path).history("shop", limit=1000)
    assert len(records) == 100
    assert len({r.id for r in records}) == 100
    expected = {f"{worker}-{n}" for worker in range(4) for n in range(25)}
    assert {r.flow_run_id for r in records} == expected


# --- queries ---------------------------------------------------------------------------------


def test_history_is_newest_first_and_filters(ledger: Ledger) -> None:
    a = ledger.append(record("a"))
    b = ledger.append(record("b", service="payments"))
    c = ledger.append(record("c", environment="staging"))
    ledger.append(record("d", app="other"))

    assert ledger.history("shop") == [c, b, a]
    assert ledger.history("shop", service="orders") == [c, a]
    assert ledger.history("shop", environment="dev") == [b, a]
    assert ledger.history("shop", service="orders", environment="dev") == [a]
    assert ledger.history("shop", limit=2) == [c, b]
    with pytest.raises(TerminalError, match="limit: 0 must be at least 1"):
        ledger.history("shop", limit=0)


def test_current_ignores_unsuccessful_attempts_after_a_success(ledger: Ledger) -> None:
    assert ledger.current("shop", "dev", "orders") is None
    good = ledger.append(record("a"))
    ledger.append(record("b", outcome=Outcome.FAILED, reason="health check failed"))
    ledger.append(record("c", outcome=Outcome.REJECTED, reason="approval timed out"))
    ledger.append(record("d", outcome=Outcome.ROLLED_BACK, reason="error rate 12% > 5%"))
    ledger.append(record("e", environment="staging"))

    assert ledger.current("shop", "dev", "orders") == good
    assert ledger.current("shop", "dev", "payments") is None


def test_verified_in_needs_a_success_of_that_digest_in_that_environment(ledger: Ledger) -> None:
    ledger.append(record("a", outcome=Outcome.FAILED))
    verified = ledger.append(record("b"))

    assert ledger.verified_in("shop", "dev", "orders", digest("a")) is None
    assert ledger.verified_in("shop", "staging", "orders", digest("b")) is None
    assert ledger.verified_in("shop", "dev", "payments", digest("b")) is None
    assert ledger.verified_in("shop", "dev", "orders", digest("b")) == verified


def test_a_later_failure_of_the_same_digest_takes_its_verification_back(ledger: Ledger) -> None:
    ledger.append(record("a"))
    ledger.append(record("a", outcome=Outcome.FAILED, reason="a dependent's tests failed"))
    assert ledger.verified_in("shop", "dev", "orders", digest("a")) is None
    again = ledger.append(record("a"))
    assert ledger.verified_in("shop", "dev", "orders", digest("a")) == again


def test_previous_good_is_the_version_before_the_current_one(ledger: Ledger) -> None:
    assert ledger.previous_good("shop", "dev", "orders") is None
    ledger.append(record("1"))
    v1 = ledger.append(record("1"))
    assert ledger.previous_good("shop", "dev", "orders") is None  # only one digest ever succeeded

    ledger.append(record("2"))
    ledger.append(record("2"))  # a redeploy of the current digest is not a rollback target
    ledger.append(record("3", outcome=Outcome.FAILED))
    ledger.append(record("0", environment="staging"))

    assert ledger.previous_good("shop", "dev", "orders") == v1


def test_environments_lists_the_pairs_with_records_in_order_of_appearance(
    ledger: Ledger,
) -> None:
    ledger.append(record("a"))
    ledger.append(record("a", service="payments", outcome=Outcome.FAILED))
    ledger.append(record("a", environment="staging"))
    ledger.append(record("b"))
    ledger.append(record("a", app="other", environment="prod"))

    assert ledger.environments("shop") == [
        ("dev", "orders"),
        ("dev", "payments"),
        ("staging", "orders"),
    ]
    assert ledger.environments("nothing") == []


# --- the record ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    ["127.0.0.1:5000/shop/orders:latest", "orders@sha256:abc", f"orders@md5:{'a' * 64}"],
)
def test_an_image_that_is_not_pinned_by_digest_is_refused(image: str) -> None:
    with pytest.raises(ValidationError, match="is not pinned; use repository@sha256:"):
        record(image=image)


def test_naive_datetimes_and_an_end_before_the_start_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        record(started_at=datetime(2026, 5, 9, 7, 30))
    with pytest.raises(ValidationError, match="is before started_at"):
        record(ended_at=T0 - timedelta(seconds=1))


def test_history_shows_which_configuration_version_ran(ledger: Ledger) -> None:
    version = "0a1b2c3d-aaaa-bbbb-cccc-000000000001"
    stored = ledger.append(record("a", config=f"dev-config@{version}"))

    assert ledger.history("shop")[0].config == f"dev-config@{version}"
    assert "dev-config@0a1b2c3d " in format_history([stored]) + " "


def test_a_ledger_file_of_the_first_schema_is_migrated_with_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO records (app, service, environment, image, digest, commit_sha, tree, "
            "strategy, outcome, reason, started_at, ended_at) VALUES ('shop', 'orders', 'dev', "
            f"'r/o@{digest('a')}', '{digest('a')}', 'c', 't', 'rolling', 'succeeded', '', "
            "'2026-05-09T07:30:00+00:00', '2026-05-09T07:32:00+00:00')"
        )

    ledger = Ledger(path)

    [old] = ledger.history("shop")
    assert old.config is None and old.service == "orders"
    ledger.append(record("b", config="dev-config@v2"))
    assert ledger.history("shop")[0].config == "dev-config@v2"


# --- releases --------------------------------------------------------------------------------


def release(version: str, commit: str = "c" * 40) -> Release:
    return Release(
        app="shop",
        commit=commit,
        created_at=T0,
        services={
            "orders": ServiceImage(
                image=ImageRef.parse(f"127.0.0.1:5000/shop/orders@{digest(version)}"),
                commit=commit,
                tree=version * 40,
                key=version * 64,
            )
        },
        settings={"dev": {"orders": {"port": 8002}}},
    )


def test_a_commit_finds_the_release_it_made_last(ledger: Ledger) -> None:
    first, patched = release("a"), release("b")  # same commit, a base image patched between
    ledger.add_release(first, "/repo")
    assert ledger.release_of_commit("shop", "c" * 40) == first
    ledger.add_release(patched, "/repo")
    assert ledger.release_of_commit("shop", "c" * 40) == patched
    assert ledger.release_of_commit("shop", "d" * 40) is None
    assert ledger.release_of_commit("other", "c" * 40) is None


def test_the_same_content_from_another_commit_is_one_release_listed_once(ledger: Ledger) -> None:
    ledger.add_release(release("a", commit="1" * 40), "/repo")
    ledger.add_release(release("a", commit="2" * 40), "/repo")  # a merge: same content
    [only] = ledger.releases("shop")
    assert only.commit == "1" * 40, "as first made"
    assert ledger.release_of_commit("shop", "2" * 40) == release("a", commit="2" * 40)
    assert ledger.release_repository("shop", only.id) == "/repo"


def test_a_release_is_found_by_id_prefix_or_alias(ledger: Ledger) -> None:
    made = release("a")
    ledger.add_release(made, "/repo")
    assert ledger.find_release("shop", made.id[:6]) == made
    assert ledger.find_release("shop", made.alias) == made
    with pytest.raises(TerminalError, match="no release of shop matches 'ffff'"):
        ledger.find_release("shop", "ffff")
    with pytest.raises(TerminalError, match="no release of shop matches 'abc'"):
        ledger.find_release("shop", "abc")  # too short to be an id


def test_an_ambiguous_prefix_lists_the_candidates(ledger: Ledger) -> None:
    seen: dict[str, Release] = {}
    for number in range(5000):  # two ids sharing 4 hex digits come within a few hundred
        one = release("a").model_copy(
            update={"settings": {"dev": {"orders": {"port": 1024 + number}}}}
        )
        if (twin := seen.get(one.id[:4])) is not None:
            break
        seen[one.id[:4]] = one
    ledger.add_release(one, "/repo")
    ledger.add_release(twin, "/repo")
    with pytest.raises(TerminalError, match=rf"matches several releases of shop .*{one.id[:12]}"):
        ledger.find_release("shop", one.id[:4])
    assert ledger.find_release("shop", one.id[:12]) == one


def test_arrivals_are_kept_in_order_per_environment(ledger: Ledger) -> None:
    ledger.arrive("shop", "dev", "r1", Via.RELEASE, "run-1")
    ledger.arrive("shop", "prod", "r1", Via.PROMOTION, "run-2")
    ledger.arrive("shop", "prod", "r0", Via.ROLLBACK, None)
    assert [(a.release, a.via) for a in ledger.arrivals("shop", "prod")] == [
        ("r1", Via.PROMOTION),
        ("r0", Via.ROLLBACK),
    ]
    assert [a.environment for a in ledger.arrivals("shop")] == ["dev", "prod", "prod"]


def test_releases_and_arrivals_cannot_be_changed(ledger: Ledger) -> None:
    ledger.add_release(release("a"), "/repo")
    ledger.arrive("shop", "dev", "r1", Via.RELEASE, None)
    _refused(ledger, "UPDATE releases SET app = 'x'", "DELETE FROM arrivals")


def test_a_digest_a_later_release_kept_unchanged_is_still_verified(ledger: Ledger) -> None:
    ledger.append(record("a"))
    ledger.append(record("a", outcome=Outcome.UNCHANGED, release="r2"))
    verified = ledger.verified_in("shop", "dev", "orders", digest("a"))
    assert verified is not None and verified.outcome == Outcome.UNCHANGED
    current = ledger.current("shop", "dev", "orders")
    assert current is not None and current.outcome == Outcome.SUCCEEDED, "not a deployment"


def test_a_ledger_of_schema_3_gains_releases_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        for statements in _MIGRATIONS[:3]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO records (app, service, environment, image, digest, commit_sha, tree, "
            "strategy, outcome, reason, started_at, ended_at) VALUES ('shop', 'orders', 'dev', "
            f"'r/o@{digest('a')}', '{digest('a')}', 'c', 't', 'rolling', 'succeeded', '', "
            "'2026-05-09T07:30:00+00:00', '2026-05-09T07:32:00+00:00')"
        )

    ledger = Ledger(path)

    [old] = ledger.history("shop")
    assert old.settings is None and old.release is None
    ledger.add_release(release("b"), "/repo")
    assert ledger.releases("shop") == [release("b")]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (RolledBack("canary failed"), Outcome.ROLLED_BACK),
        (NotApproved("bob rejected"), Outcome.REJECTED),
        (StageFailed("unit tests failed"), Outcome.FAILED),
        (RuntimeError("a bug"), Outcome.FAILED),
    ],
)
def test_what_an_attempt_that_ended_with_an_error_is(error: Exception, outcome: Outcome) -> None:
    assert outcome_of(error) == outcome


def test_the_soak_clock_runs_from_the_start_of_a_digests_unbroken_stretch(ledger: Ledger) -> None:
    def at(version: str, minute: int, outcome: Outcome = Outcome.SUCCEEDED) -> None:
        ended = T0 + timedelta(minutes=minute)
        ledger.append(record(version, outcome=outcome, started_at=ended, ended_at=ended))

    at("a", 1)
    at("b", 2)  # b served
    at("a", 3)  # a again: its stretch starts here
    at("c", 4, Outcome.ROLLED_BACK)  # another version tried and put back: a kept serving
    at("a", 5, Outcome.UNCHANGED)  # a release re-run that kept it
    assert ledger.serving_since("shop", "dev", "orders", digest("a")) == T0 + timedelta(minutes=3)
    assert ledger.serving_since("shop", "dev", "orders", digest("d")) is None


# --- engines -----------------------------------------------------------------------------------


def _columns(where: Path | str) -> dict[str, list[tuple[str, bool]]]:
    inspector = sa.inspect(open_database(where))
    return {
        # SQLite says an INTEGER PRIMARY KEY may be null (it never is): keys by name only
        table: sorted(
            (c["name"], c["nullable"] or c["name"] in ("id", "seq"))
            for c in inspector.get_columns(table)
        )
        for table in sorted(inspector.get_table_names())
        if table != "relay_schema"
    }


def test_every_engine_and_every_path_to_it_has_the_same_schema(
    tmp_path: Path, postgres_url: str
) -> None:
    """A new SQLite file, a SQLite ledger of the first schema migrated, and PostgreSQL: the
    same tables and columns, so one set of queries serves them all."""
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    new = _columns(tmp_path / "new.db")
    assert _columns(old) == new
    assert _columns(postgres_url) == new
    assert "webhook_deliveries" in new


def _append_many_to(where: str, worker: int, start: Any) -> None:
    start.wait()
    ledger = Ledger(where)  # each process migrates (or finds migrated) the database itself
    for n in range(25):
        ledger.append(record("a", flow_run_id=f"{worker}-{n}"))


def test_concurrent_appends_from_four_processes_to_postgresql_all_land(postgres_url: str) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [
        context.Process(target=_append_many_to, args=(postgres_url, worker, start))
        for worker in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)

    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    records = Ledger(postgres_url).history("shop", limit=1000)
    assert len({r.id for r in records}) == len(records) == 100


def test_an_unreachable_database_server_is_worth_a_retry() -> None:
    from relay.errors import TransientError

    with pytest.raises(TransientError, match=r"postgresql\+psycopg://relay:\*\*\*@127.0.0.1:1/x"):
        Ledger("postgresql+psycopg://relay:hunter2@127.0.0.1:1/x")


def test_a_database_url_relay_cannot_use_says_what_to_write() -> None:
    with pytest.raises(TerminalError, match="Relay's database is SQLite or PostgreSQL"):
        Ledger("mysql://relay@127.0.0.1:3306/relay")
