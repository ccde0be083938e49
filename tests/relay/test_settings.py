"""relay.settings: one rule for RELAY_HOME, used by the ledger, HAProxy's state and the stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.settings import ledger_path, prometheus_url, relay_database, relay_home, workdir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake user home; RELAY_HOME, XDG_CACHE_HOME and RELAY_LEDGER unset."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RELAY_HOME", "XDG_CACHE_HOME", "RELAY_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("relay_home_env", "xdg_cache_home", "expected"),
    [
        (None, None, ".cache/relay"),
        ("", None, ".cache/relay"),  # empty counts as unset
        (None, "", ".cache/relay"),
        ("", "", ".cache/relay"),
        (None, "~/xdg", "xdg/relay"),
        ("", "/abs/xdg", "/abs/xdg/relay"),
        ("~/r", None, "r"),  # ~ is expanded
        ("~/r", "/abs/xdg", "r"),
        ("/srv/relay", None, "/srv/relay"),
        ("rel/home", None, "rel/home"),  # relative to the working directory, made absolute
    ],
)
def test_relay_home(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    relay_home_env: str | None,
    xdg_cache_home: str | None,
    expected: str,
) -> None:
    if relay_home_env is not None:
        monkeypatch.setenv("RELAY_HOME", relay_home_env)
    if xdg_cache_home is not None:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg_cache_home)
    assert relay_home() == home / expected  # an absolute `expected` replaces `home`
    assert relay_home().is_absolute()


def test_ledger_and_workdirs_follow_an_expanded_home(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", "~/r")
    assert ledger_path() == home / "r" / "ledger.db"
    checkout = workdir("https://git.example/shop.git", "0123456789abcdef")
    assert checkout.parent.parent == home / "r" / "work"
    assert checkout.name == "0123456789ab"


def test_empty_relay_home_gives_the_default_ledger(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", "")
    assert ledger_path() == home / ".cache" / "relay" / "ledger.db"


def test_relay_ledger_overrides_the_ledger_path(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", "~/r")
    monkeypatch.setenv("RELAY_LEDGER", "/shared/ledger.db")
    assert ledger_path() == Path("/shared/ledger.db")


def test_a_database_url_takes_relays_database_off_the_sqlite_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_LEDGER", "/local/ledger.db")
    monkeypatch.setenv("RELAY_DATABASE_URL", " ")
    assert relay_database() == Path("/local/ledger.db"), "an empty URL counts as unset"
    monkeypatch.setenv("RELAY_DATABASE_URL", " postgresql+psycopg://relay@db:5432/relay ")
    assert relay_database() == "postgresql+psycopg://relay@db:5432/relay"


def test_the_prometheus_url_from_the_environment_is_trimmed_like_an_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAY_PROMETHEUS_URL", " http://127.0.0.1:9095/ ")
    assert prometheus_url() == "http://127.0.0.1:9095"
    monkeypatch.setenv("RELAY_PROMETHEUS_URL", "")
    assert prometheus_url() is None
