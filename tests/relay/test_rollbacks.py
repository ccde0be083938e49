"""Rollback targets as pure rules: one service, or a whole environment's previous release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relay.errors import TerminalError
from relay.ledger import Outcome, Record
from relay.releases import Arrival, Via
from relay.rollbacks import previous_release, service_target

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def record(version: str, strategy: str = "canary") -> Record:
    return Record(
        app="shop",
        service="payments",
        environment="prod",
        image=f"127.0.0.1:5000/shop/payments@sha256:{version * 64}",
        commit=version * 40,
        tree="t",
        strategy=strategy,
        outcome=Outcome.SUCCEEDED,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=1),
    )


def test_a_service_goes_back_to_its_previous_good_version() -> None:
    assert service_target("payments", "prod", record("b"), record("a")) == record("a")


def test_a_second_rollback_or_nothing_earlier_is_refused() -> None:
    with pytest.raises(TerminalError, match="already runs a rolled-back version"):
        service_target("payments", "prod", record("a", strategy="rollback"), record("b"))
    with pytest.raises(TerminalError, match="no earlier good version in prod"):
        service_target("payments", "prod", record("a"), None)


# --- a whole environment -------------------------------------------------------------------------


def arrival(release: str, via: Via, minutes: int) -> Arrival:
    return Arrival(release, "prod", via, T0 + timedelta(minutes=minutes))


def test_the_previous_release_is_the_one_before_the_current() -> None:
    arrivals = [
        arrival("r1", Via.PROMOTION, 0),
        arrival("r2", Via.PROMOTION, 1),
        arrival("r2", Via.PROMOTION, 2),  # promoted again (a secret rotated): still r2
    ]
    assert previous_release(arrivals, "prod").release == "r1"


@pytest.mark.parametrize(
    ("arrivals", "message"),
    [
        ([], "no release has served prod"),
        ([arrival("r1", Via.PROMOTION, 0)], "served only release r1"),
        (
            [
                arrival("r1", Via.PROMOTION, 0),
                arrival("r2", Via.PROMOTION, 1),
                arrival("r1", Via.ROLLBACK, 2),
            ],
            "already runs a rolled-back release",
        ),
    ],
)
def test_a_rollback_with_nothing_to_go_back_to_is_refused(
    arrivals: list[Arrival], message: str
) -> None:
    with pytest.raises(TerminalError, match=message):
        previous_release(arrivals, "prod")
