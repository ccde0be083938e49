"""Releases: everything an application runs at a commit, as one content-addressed unit.

A release holds every service of `relay.yaml` with its image digest (built, or reused because its
image key did not change) and, per environment and service, the settings that change what runs
there (ports, health path, the neighbours' addresses, which secrets and keys, the cluster's
replicas and resources: `relay.specs.run_settings`). Its id is a hash of that content, so the
same content has the same id whatever commit it came from, as Kargo names its Freight: a merge
commit that changes no service and no setting is the same release as the commit it merged.

Environments receive releases, not loose images. A promotion moves a release that passed the
environment before and deploys only what differs from what the target runs; an environment
rolls back to the release that served it before. This module is the pure part: the model, its
id, what differs between two of them, and which release a rollback returns to. The ledger
(`relay.ledger`) stores releases and when each arrived in an environment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from relay.registry import ImageRef
from relay.tables import table

__all__ = [
    "Arrival",
    "Release",
    "ReleaseStatus",
    "ServiceChange",
    "ServiceImage",
    "Side",
    "Via",
    "diff",
    "fingerprint",
    "format_diff",
    "format_releases",
    "release_statuses",
]

SHORT = 12  # hex digits people see of a release id, as git shows commits


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of one service's run settings in one environment: what the ledger records
    and the platform carries (a container label), so "does it run with these settings?" is a
    comparison of two strings."""
    return hashlib.sha256(_canonical(settings).encode()).hexdigest()[:16]


class ServiceImage(BaseModel):
    """A service's image in a release, and where it came from."""

    model_config = ConfigDict(frozen=True)

    image: ImageRef
    commit: str  # the commit the image was built from (older than the release's when reused)
    tree: str  # the service's git tree hash at the release's commit
    key: str  # the image key it was found or built under (relay.image_key)


class Release(BaseModel):
    """Every service's image and every environment's run settings at one commit."""

    model_config = ConfigDict(frozen=True)

    app: str
    commit: str  # the commit it was first made from
    created_at: AwareDatetime
    services: dict[str, ServiceImage]
    settings: dict[str, dict[str, dict[str, Any]]]  # environment -> service -> run settings

    def content(self) -> dict[str, Any]:
        """What the id is made of: the digests and the settings, nothing about provenance."""
        return {
            "app": self.app,
            "services": {name: str(entry.image) for name, entry in sorted(self.services.items())},
            "settings": self.settings,
        }

    @property
    def id(self) -> str:
        """sha256 of the canonical content, 64 hex digits."""
        return hashlib.sha256(_canonical(self.content()).encode()).hexdigest()

    @property
    def short_id(self) -> str:
        return self.id[:SHORT]

    @property
    def alias(self) -> str:
        """Readable: the day it was made and its commit, e.g. `2026-12-06-1a2b3c4`."""
        return f"{self.created_at:%Y-%m-%d}-{self.commit[:7]}"

    def fingerprint(self, environment: str, service: str) -> str:
        return fingerprint(self.settings.get(environment, {}).get(service, {}))

    def image(self, service: str) -> ImageRef:
        return self.services[service].image


class Via(StrEnum):
    """How a release came to serve an environment."""

    RELEASE = "release"  # the release flow, into the first environment
    PROMOTION = "promotion"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Arrival:
    """A release started serving an environment as a whole (every service on its digest)."""

    release: str  # the release id
    environment: str
    via: Via
    at: datetime
    flow_run_id: str | None = None


# -- comparing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a release, or what an environment runs, per service."""

    label: str
    images: Mapping[str, ImageRef]
    commits: Mapping[str, str]  # service -> the commit its image was built from
    settings: Mapping[str, Mapping[str, Any]]  # service -> run settings (where known)

    @classmethod
    def of_release(cls, release: Release, environment: str, label: str = "") -> Side:
        return cls(
            label=label or release.short_id,
            images={name: entry.image for name, entry in release.services.items()},
            commits={name: entry.commit for name, entry in release.services.items()},
            settings=release.settings.get(environment, {}),
        )


@dataclass(frozen=True)
class ServiceChange:
    """A service compared across two sides."""

    service: str
    before: ImageRef | None
    after: ImageRef | None
    before_commit: str
    after_commit: str
    settings: tuple[str, ...]  # "port: 8004 -> 8005", one per changed setting

    @property
    def image_changed(self) -> bool:
        return self.before != self.after

    @property
    def changed(self) -> bool:
        return self.image_changed or bool(self.settings)

    def describe(self) -> str:
        """`current -> new` as a person reads it."""
        if not self.changed:
            return f"{_short(self.after)} (unchanged)"
        if not self.image_changed:
            return f"{_short(self.after)}, settings: {'; '.join(self.settings)}"
        return f"{_short(self.before)} -> {_short(self.after)}"


def _short(image: ImageRef | None) -> str:
    return image.short if image is not None else "nothing"


def diff(before: Side, after: Side, order: Iterable[str] | None = None) -> list[ServiceChange]:
    """Per service (in `order`, else sorted), what changes from `before` to `after`."""
    names = list(order) if order is not None else sorted(set(before.images) | set(after.images))
    return [
        ServiceChange(
            service=name,
            before=before.images.get(name),
            after=after.images.get(name),
            before_commit=before.commits.get(name, ""),
            after_commit=after.commits.get(name, ""),
            settings=_setting_changes(before.settings.get(name), after.settings.get(name)),
        )
        for name in names
    ]


def _setting_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """Changed settings as `path: old -> new` (nested mappings flattened with dots). Unknown
    settings on one side (a service new in a release, an old ledger record) are no change."""
    if before is None or after is None:
        return ()
    old, new = _flatten(before), _flatten(after)
    return tuple(
        f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    )


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    return "(none)" if value is None else _canonical(value) if not isinstance(value, str) else value


# -- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseStatus:
    """Where a release has been verified (it served there as a whole) and where it serves."""

    release: Release
    verified: tuple[str, ...]
    serving: tuple[str, ...]


def release_statuses(
    releases: Sequence[Release],
    arrivals: Sequence[Arrival],
    running: Mapping[str, Mapping[str, str]],
) -> list[ReleaseStatus]:
    """`running` holds, per environment, the image each service runs (by the ledger). An
    environment serves a release when the release arrived there last and every one of its
    services still runs the release's digest (a one-service rollback since breaks that)."""
    latest: dict[str, str] = {}
    verified: dict[str, list[str]] = {}
    for arrival in arrivals:
        latest[arrival.environment] = arrival.release
        places = verified.setdefault(arrival.release, [])
        if arrival.environment not in places:
            places.append(arrival.environment)
    statuses = []
    for release in releases:
        serving = tuple(
            environment
            for environment, release_id in latest.items()
            if release_id == release.id
            and all(
                running.get(environment, {}).get(name) == str(entry.image)
                for name, entry in release.services.items()
            )
        )
        statuses.append(ReleaseStatus(release, tuple(verified.get(release.id, [])), serving))
    return statuses


def format_releases(statuses: Sequence[ReleaseStatus]) -> str:
    """`relay releases`: one line per release, newest first."""
    headers = ("RELEASE", "ALIAS", "COMMIT", "CREATED (UTC)", "VERIFIED IN", "SERVING IN")
    rows = [
        (
            s.release.short_id,
            s.release.alias,
            s.release.commit[:12],
            f"{s.release.created_at:%Y-%m-%d %H:%M}",
            ",".join(s.verified) or "-",
            ",".join(s.serving) or "-",
        )
        for s in statuses
    ]
    return table(headers, rows)


def format_diff(
    before: str, after: str, changes: Sequence[ServiceChange], commits: Sequence[str]
) -> str:
    """`relay diff A B`: per service digest and commit on each side and the settings that
    change, then the commits between."""
    headers = ("SERVICE", before.upper(), after.upper(), "BUILT FROM", "SETTINGS")
    rows = [
        (
            change.service,
            _short(change.before),
            _short(change.after) if change.image_changed else "unchanged",
            _commits(change),
            "; ".join(change.settings) or "-",
        )
        for change in changes
    ]
    lines = [table(headers, rows)]
    changed = sum(change.changed for change in changes)
    lines.append(f"\n{changed} of {len(changes)} service(s) differ.")
    if commits:
        lines.append(f"{len(commits)} commit(s) from {before} to {after}:")
        lines += [f"  {line}" for line in commits]
    return "\n".join(lines)


def _commits(change: ServiceChange) -> str:
    if change.before_commit == change.after_commit:
        return change.after_commit[:12]
    return f"{change.before_commit[:12] or '-'} -> {change.after_commit[:12] or '-'}"
