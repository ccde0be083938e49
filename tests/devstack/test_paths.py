"""devstack.paths: the stack's files live under relay.settings.relay_home(), the same directory
as the ledger and HAProxy's state, whatever RELAY_HOME says. Fast: no stack needed."""

from __future__ import annotations

from pathlib import Path

import pytest

import devstack
from devstack.paths import Paths, stack_paths
from relay.settings import ledger_path, relay_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake user home; RELAY_HOME, XDG_CACHE_HOME and RELAY_LEDGER unset."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RELAY_HOME", "XDG_CACHE_HOME", "RELAY_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_tilde_home_is_expanded_for_the_stack_and_the_ledger_alike(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", "~/r")
    paths = stack_paths()
    assert paths.home == home / "r" == relay_home() == ledger_path().parent
    assert paths.docker_sock == home / "r" / "docker.sock"
    assert paths.pidfile("dockerd") == home / "r" / "run" / "dockerd.pid"
    assert paths.log("worker") == home / "r" / "logs" / "worker.log"
    env = devstack.environment()
    assert env["RELAY_HOME"] == str(home / "r")
    assert env["DOCKER_HOST"] == f"unix://{home}/r/docker.sock"
    assert devstack.stack_home() == home / "r"


def test_empty_home_means_the_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_HOME", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert stack_paths().home == home / ".cache" / "relay" == ledger_path().parent
    assert devstack.environment()["RELAY_HOME"] == str(home / ".cache" / "relay")


def test_a_home_too_long_for_containerds_socket_is_refused(tmp_path: Path) -> None:
    paths = Paths(tmp_path / ("x" * 80))
    with pytest.raises(devstack.StackError, match="RELAY_HOME=.* is too long"):
        paths.check_length()


def test_make_test_starts_prefect_on_an_empty_database_keeping_one_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make test` (RELAY_PREFECT_FRESH_DB=1): a server it starts does not inherit the runs of
    every earlier session; `relay stack up` alone keeps them."""
    from devstack.components import FRESH_PREFECT_DB, _prefect_prepare

    paths = Paths(tmp_path)
    paths.prefect_home.mkdir()
    db = paths.prefect_home / "prefect.db"
    db.write_text("runs of earlier sessions")
    monkeypatch.delenv(FRESH_PREFECT_DB, raising=False)
    _prefect_prepare(paths)
    assert db.read_text() == "runs of earlier sessions"

    monkeypatch.setenv(FRESH_PREFECT_DB, "1")
    _prefect_prepare(paths)
    assert not db.exists()
    assert (paths.prefect_home / "prefect.db.previous").read_text() == "runs of earlier sessions"
