"""Relay's database on PostgreSQL, end to end on the real stack: one setting,
`RELAY_DATABASE_URL`, moves what a release records (its deployment records, the release, its
arrival) from the machine's SQLite ledger to the database a fleet of workers shares, and the
command line reads them back from there. PostgreSQL is a real throwaway cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.release import release
from relay.ledger import Ledger, Outcome
from relay.releases import Via
from relay.settings import ledger_path
from tests.flows.shop import shop_repository

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
OFFSETS = {"dev": 15250}
SERVICES = ("inventory", "payments")
PASSWORD = "pg-secret-4711"


def test_a_release_on_postgresql_is_recorded_there_and_read_back_by_the_cli(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster trusts loopback, so any password is accepted: it stands for a real one, which
    # must never be shown.
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")
    monkeypatch.setenv("RELAY_DATABASE_URL", with_password)
    with shop_repository(tmp_path_factory, "pgdb", OFFSETS, services=SERVICES) as shop:
        sha = shop.commit("the shop, recorded in PostgreSQL")
        results = asyncio.run(release(str(shop.repo), sha))

        shared = Ledger(postgres_url)
        records = shared.history(shop.app)
        assert {(r.service, r.environment, r.outcome) for r in records} == {
            ("inventory", "dev", Outcome.SUCCEEDED),
            ("payments", "dev", Outcome.SUCCEEDED),
        }
        assert {r.image for r in records} == {r.image for r in results}
        made = shared.release_of_commit(shop.app, sha)
        assert made is not None and {r.release for r in records} == {made.id}
        assert [(a.release, a.via) for a in shared.arrivals(shop.app, "dev")] == [
            (made.id, Via.RELEASE)
        ]
        assert Ledger(ledger_path()).history(shop.app) == [], "nothing went to the SQLite file"

        shown = subprocess.run(
            [sys.executable, "-m", "deployments.cli", "history", "payments"],
            capture_output=True, text=True, timeout=120, cwd=shop.repo,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert sha[:12] in shown.stdout and "succeeded" in shown.stdout
        assert PASSWORD not in shown.stdout + shown.stderr
