"""Releases as pure values: their id, what differs between two, where a rollback goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relay.manifest import parse_manifest
from relay.registry import ImageRef
from relay.releases import (
    Arrival,
    Release,
    ServiceImage,
    Side,
    Via,
    diff,
    fingerprint,
    format_diff,
    format_releases,
    release_statuses,
)
from relay.specs import release_settings, run_settings

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SHOP: dict[str, Any] = {
    "app": "shop",
    "services": {
        "gateway": {"path": "services/gateway", "port": 8001, "depends_on": ["orders"]},
        "orders": {"path": "services/orders", "port": 8002, "secret_keys": ["DATABASE_URL"]},
    },
}


def image(service: str, version: str) -> ImageRef:
    return ImageRef(
        registry="127.0.0.1:5000", repository=f"shop/{service}", digest=f"sha256:{version * 64}"
    )


def make(
    versions: dict[str, str] | None = None,
    commit: str = "c" * 40,
    created_at: datetime = T0,
    manifest: dict[str, Any] | None = None,
) -> Release:
    versions = versions or {"gateway": "a", "orders": "b"}
    parsed = parse_manifest(manifest or SHOP, "relay.yaml")
    return Release(
        app="shop",
        commit=commit,
        created_at=created_at,
        services={
            name: ServiceImage(image=image(name, v), commit=commit, tree=v * 40, key=v * 64)
            for name, v in versions.items()
        },
        settings=release_settings(parsed),
    )


def with_service(name: str, **changes: Any) -> dict[str, Any]:
    services = {**SHOP["services"], name: {**SHOP["services"][name], **changes}}
    return {**SHOP, "services": services}


# --- identity --------------------------------------------------------------------------------


def test_the_same_content_has_the_same_id_whatever_the_commit_and_time() -> None:
    first = make(commit="1" * 40, created_at=T0)
    merge = make(commit="2" * 40, created_at=T0 + timedelta(days=3))
    assert first.id == merge.id and len(first.id) == 64
    assert first.short_id == first.id[:12]
    assert first.alias == "2026-12-06-1111111" and merge.alias == "2026-12-09-2222222"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"versions": {"gateway": "a", "orders": "c"}}, "a digest"),
        ({"manifest": with_service("orders", port=8005)}, "a port"),
        ({"manifest": with_service("orders", secret_keys=["DATABASE_URL", "API_KEY"])}, "a key"),
        ({"manifest": with_service("orders", health="/ready")}, "the health path"),
    ],
)
def test_any_change_to_what_runs_is_another_release(change: dict[str, Any], why: str) -> None:
    assert make(**change).id != make().id, why


def test_a_strategy_is_not_part_of_what_runs() -> None:
    manifest = {**SHOP, "environments": {"dev": {"port_offset": 10000, "strategy": "canary"}}}
    plain = {**SHOP, "environments": {"dev": {"port_offset": 10000}}}
    assert make(manifest=manifest).id == make(manifest=plain).id


def test_a_providers_port_is_part_of_its_consumers_settings() -> None:
    """gateway reaches orders at ORDERS_URL: moving orders changes what gateway runs with."""
    before = parse_manifest(SHOP, "relay.yaml")
    after = parse_manifest(with_service("orders", port=8005), "relay.yaml")
    assert run_settings(before, "dev", "gateway") != run_settings(after, "dev", "gateway")
    assert run_settings(after, "dev", "gateway")["neighbours"] == {
        "ORDERS_URL": "http://127.0.0.1:18005"
    }


def test_the_fingerprint_is_per_environment_and_service() -> None:
    release = make()
    assert release.fingerprint("dev", "orders") == fingerprint(release.settings["dev"]["orders"])
    assert release.fingerprint("dev", "orders") != release.fingerprint("staging", "orders")
    assert len(release.fingerprint("dev", "orders")) == 16


def test_a_release_survives_json_with_its_id() -> None:
    release = make()
    again = Release.model_validate_json(release.model_dump_json())
    assert again == release and again.id == release.id
    assert isinstance(again.services["orders"].image, ImageRef)


# --- comparing -------------------------------------------------------------------------------


def test_diff_names_digest_and_setting_changes_and_the_unchanged() -> None:
    before = make({"gateway": "a", "orders": "b"})
    after = make({"gateway": "a", "orders": "c"}, manifest=with_service("gateway", port=8011))
    changes = {
        c.service: c for c in diff(Side.of_release(before, "dev"), Side.of_release(after, "dev"))
    }
    assert changes["orders"].image_changed and not changes["orders"].settings
    assert not changes["gateway"].image_changed
    assert changes["gateway"].settings == (
        "port: 8001 -> 8011",
        "ports.blue: 18101 -> 18111",
        "ports.green: 18201 -> 18211",
        "ports.public: 18001 -> 18011",
    )
    assert changes["orders"].describe().startswith("sha256:bbbbbbbbbbbb -> sha256:cccccccccccc")

    text = format_diff("r1", "r2", list(changes.values()), ["1a2b3c4d5e6f second commit"])
    assert "2 of 2 service(s) differ." in text
    assert "1 commit(s) from r1 to r2:" in text and "1a2b3c4d5e6f second commit" in text


def test_a_side_without_settings_shows_no_setting_changes() -> None:
    release = make()
    running = Side("prod", {"orders": image("orders", "b")}, {"orders": "c" * 40}, {})
    [change] = diff(running, Side.of_release(release, "prod"), order=["orders"])
    assert not change.changed and change.describe() == "sha256:bbbbbbbbbbbb (unchanged)"


# --- where releases are ----------------------------------------------------------------------


def test_statuses_say_where_each_release_was_verified_and_where_it_serves() -> None:
    old, new = make({"gateway": "a", "orders": "b"}), make({"gateway": "a", "orders": "c"})
    arrivals = [
        Arrival(old.id, "dev", Via.RELEASE, T0),
        Arrival(old.id, "prod", Via.PROMOTION, T0),
        Arrival(new.id, "dev", Via.RELEASE, T0),
        Arrival(new.id, "prod", Via.PROMOTION, T0),
    ]
    running = {
        "dev": {"gateway": str(image("gateway", "a")), "orders": str(image("orders", "c"))},
        # someone rolled orders back by hand in prod: prod serves neither release whole
        "prod": {"gateway": str(image("gateway", "a")), "orders": str(image("orders", "b"))},
    }
    statuses = {s.release.id: s for s in release_statuses([new, old], arrivals, running)}
    assert statuses[new.id].verified == ("dev", "prod") and statuses[new.id].serving == ("dev",)
    assert statuses[old.id].verified == ("dev", "prod") and statuses[old.id].serving == ()
    text = format_releases([statuses[new.id], statuses[old.id]])
    assert text.splitlines()[0].split() == [
        "RELEASE",
        "ALIAS",
        "COMMIT",
        "CREATED",
        "(UTC)",
        "VERIFIED",
        "IN",
        "SERVING",
        "IN",
    ]
    first, second = text.splitlines()[1:]
    assert first.split()[0] == new.short_id and first.split()[-2:] == ["dev,prod", "dev"]
    assert second.split()[0] == old.short_id and second.split()[-2:] == ["dev,prod", "-"]
