"""Promotion rules as pure functions: the gate's refusals and what the approver reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from relay.ledger import Outcome, Record
from relay.promotion import approval_description, refusals, soak_refusal
from relay.registry import ImageRef
from relay.releases import Release, ServiceImage

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def ref(service: str, version: str) -> ImageRef:
    return ImageRef(
        registry="127.0.0.1:5000", repository=f"shop/{service}", digest="sha256:" + version * 64
    )


def record(service: str, version: str, environment: str) -> Record:
    return Record(
        app="shop",
        service=service,
        environment=environment,
        image=str(ref(service, version)),
        commit=version * 40,
        tree="t",
        strategy="rolling",
        outcome=Outcome.SUCCEEDED,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=1),
    )


RELEASE = Release(
    app="shop",
    commit="f" * 40,
    created_at=T0,
    services={
        "inventory": ServiceImage(image=ref("inventory", "a"), commit="a" * 40, tree="t", key="k"),
        "payments": ServiceImage(image=ref("payments", "c"), commit="f" * 40, tree="t", key="k"),
    },
    settings={},
)


def test_the_form_shows_current_to_new_per_service_and_the_unchanged() -> None:
    text = approval_description(
        RELEASE,
        "Ada",
        "Payments v2",
        "prod",
        "staging",
        current={
            "inventory": record("inventory", "a", "prod"),
            "payments": record("payments", "b", "prod"),
        },
        passed={
            "inventory": record("inventory", "a", "staging"),
            "payments": record("payments", "c", "staging"),
        },
    )
    lines = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")
    }
    assert "`bbbbbbbbbbbb` → **`cccccccccccc`**" in lines["payments"]
    assert "`aaaaaaaaaaaa` unchanged" in lines["inventory"]
    assert "1 of 2 service(s) change in prod" in text
    assert RELEASE.short_id in text and "f" * 40 in text and "Ada: Payments v2" in text
    assert "✓ 12-06 09:01" in lines["payments"]


def test_a_first_deployment_shows_nothing_before() -> None:
    text = approval_description(
        RELEASE,
        "Ada",
        "First",
        "prod",
        "staging",
        current={"inventory": None, "payments": None},
        passed={},
    )
    assert "`nothing` → **`aaaaaaaaaaaa`**" in text and "2 of 2 service(s) change" in text


def test_every_digest_that_did_not_pass_is_named() -> None:
    problems = refusals(
        RELEASE,
        ["inventory", "payments"],
        "staging",
        {"inventory": record("inventory", "a", "staging"), "payments": None},
    )
    assert problems == [
        f"payments: {ref('payments', 'c')} has not passed staging; deploy and verify it in "
        f"staging before promoting release {RELEASE.short_id}"
    ]


def test_a_release_that_has_not_soaked_long_enough_is_refused_saying_when_it_may_go() -> None:
    since = {"inventory": T0, "payments": T0 + timedelta(minutes=1)}  # the latest counts
    start = T0 + timedelta(minutes=1)
    early = soak_refusal(RELEASE, since, "staging", "prod", 600, start + timedelta(seconds=120))
    assert early is not None
    assert "has served staging since 2026-12-06 09:01:00 UTC, 120 s of the 600 s" in early
    assert "environments.prod.soak_seconds" in early
    assert "may be promoted to prod at 2026-12-06 09:11:00 UTC (in 481 s)" in early
    assert (
        soak_refusal(RELEASE, since, "staging", "prod", 600, start + timedelta(seconds=600)) is None
    )
    assert soak_refusal(RELEASE, since, "staging", "prod", 0, start) is None, "0: no soak"
