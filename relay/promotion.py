"""Promotion rules (pure): an environment receives only what passed the one before it, and the
person who approves production sees exactly what changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from relay.errors import TerminalError
from relay.ledger import Record
from relay.manifest import Manifest
from relay.registry import ImageRef
from relay.releases import Release, Side, diff


def previous_environment(manifest: Manifest, environment: str) -> str:
    manifest.check_environment(environment)
    names = list(manifest.environments)
    index = names.index(environment)
    if index == 0:
        raise TerminalError(
            f"{environment} is the first environment; the release flow deploys to it, "
            f"promotion starts at {names[1] if len(names) > 1 else 'the next one'}"
        )
    return names[index - 1]


def refusals(
    release: Release, services: Sequence[str], previous: str, passed: Mapping[str, Record | None]
) -> list[str]:
    """One line per service of `release` whose digest has not passed `previous` (`passed`
    holds the ledger's verifying record of each, or None)."""
    return [
        f"{service}: {release.image(service)} has not passed {previous}; deploy and verify it "
        f"in {previous} before promoting release {release.short_id}"
        for service in services
        if passed.get(service) is None
    ]


def soak_refusal(
    release: Release,
    since: Mapping[str, datetime],
    previous: str,
    environment: str,
    soak_seconds: int,
    now: datetime,
) -> str | None:
    """Why `release` may not go to `environment` yet: it has not served `previous` for
    `soak_seconds` (`since`: when each of its digests began serving there without another
    version between, the latest counts); None when it may."""
    if not soak_seconds or not since:
        return None
    start = max(since.values())
    ready = start + timedelta(seconds=soak_seconds)
    if now >= ready:
        return None
    return (
        f"release {release.short_id} has served {previous} since {start:%Y-%m-%d %H:%M:%S} UTC, "
        f"{int((now - start).total_seconds())} s of the {soak_seconds} s that "
        f"environments.{environment}.soak_seconds asks; it may be promoted to {environment} "
        f"at {ready:%Y-%m-%d %H:%M:%S} UTC (in {int((ready - now).total_seconds()) + 1} s)"
    )


def approval_description(
    release: Release,
    author: str,
    subject: str,
    environment: str,
    previous: str,
    current: Mapping[str, Record | None],
    passed: Mapping[str, Record | None],
) -> str:
    """The approval form's text: per service what runs now and what would, the unchanged ones
    listed as such, and when each new digest passed the previous environment."""
    now = Side(
        label=environment,
        images={s: ImageRef.parse(r.image) for s, r in current.items() if r is not None},
        commits={s: r.commit for s, r in current.items() if r is not None},
        settings={},
    )
    changes = diff(now, Side.of_release(release, environment), order=list(current))
    rows = []
    for change in changes:
        record = passed.get(change.service)
        when = f"✓ {record.ended_at:%m-%d %H:%M}" if record is not None else "-"
        if change.image_changed:
            what = f"`{_hex(change.before)}` → **`{_hex(change.after)}`**"
        else:
            what = f"`{_hex(change.after)}` unchanged"
        rows.append(f"| {change.service} | {what} | {change.after_commit[:10]} | {when} |")
    changed = sum(change.image_changed for change in changes)
    return f"""## Deploy **{release.app}** to **{environment}**?

Release `{release.short_id}` ({release.alias}), commit `{release.commit}` by {author}: {subject}

{changed} of {len(changes)} service(s) change in {environment}; the others stay as they run.

| service | {environment} now → release | built from | passed {previous} (UTC) |
|---|---|---|---|
{chr(10).join(rows)}

Every digest above passed {previous} (deploy, integration and end-to-end tests).
"""


def _hex(image: ImageRef | None) -> str:
    """12 hex digits of a digest, or nothing: what fits a column of Prefect's dialog."""
    return image.digest.removeprefix("sha256:")[:12] if image is not None else "nothing"
