"""`relay releases` and `relay diff`: what each release holds, where it has been verified and
where it serves, and what changes from one release or environment to another."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relay import git
from relay.errors import TerminalError
from relay.ledger import Ledger
from relay.registry import ImageRef
from relay.releases import (
    Release,
    Side,
    diff,
    format_diff,
    format_releases,
    release_statuses,
)
from relay.settings import relay_database, workdir


def releases_report(app: str, environment: str | None = None, limit: int = 20) -> str:
    ledger = Ledger(relay_database())
    statuses = release_statuses(
        ledger.releases(app, limit), ledger.arrivals(app), _running(ledger, app)
    )
    if environment is not None:
        statuses = [s for s in statuses if environment in s.verified or environment in s.serving]
    if not statuses:
        where = f" in {environment}" if environment else ""
        return f"no releases of {app}{where} recorded; `relay run` makes one"
    return format_releases(statuses)


@dataclass(frozen=True)
class _Resolved:
    side: Side
    commit: str  # for the commits between
    release: Release | None
    environment: str | None


def diff_report(
    app: str, before: str, after: str, environment: str | None, repository: str | None
) -> str:
    """`before` and `after` are each an environment, a release (id prefix or alias), or a
    commit of `repository` (a branch, tag or SHA: the release it made)."""
    ledger = Ledger(relay_database())
    known = {env for env, _ in ledger.environments(app)}
    settings_in = environment or next((name for name in (after, before) if name in known), None)
    a = _resolve(ledger, app, before, known, settings_in, repository)
    b = _resolve(ledger, app, after, known, settings_in, repository)
    order = sorted(set(a.side.images) | set(b.side.images))
    changes = diff(a.side, b.side, order)
    source = repository or next(
        (
            r
            for side in (b, a)
            if side.release is not None
            and (r := ledger.release_repository(app, side.release.id)) is not None
        ),
        None,
    )
    return format_diff(before, after, changes, _commits(source, a.commit, b.commit))


def _resolve(
    ledger: Ledger,
    app: str,
    name: str,
    environments: set[str],
    settings_in: str | None,
    repository: str | None,
) -> _Resolved:
    if name not in environments:
        made = _release(ledger, app, name, repository)
        place = settings_in or next(reversed(made.settings), "")
        return _Resolved(Side.of_release(made, place, name), made.commit, made, None)
    running = _running(ledger, app).get(name, {})
    arrivals = ledger.arrivals(app, name)
    if arrivals:
        made = ledger.find_release(app, arrivals[-1].release)
        if all(running.get(s) == str(e.image) for s, e in made.services.items()):
            return _Resolved(
                Side.of_release(made, settings_in or name, name), made.commit, made, name
            )
    records = {s: ledger.current(app, name, s) for s in running}
    side = Side(
        label=name,
        images={s: ImageRef.parse(r.image) for s, r in records.items() if r is not None},
        commits={s: r.commit for s, r in records.items() if r is not None},
        settings={},
    )
    newest = max(
        (r for r in records.values() if r is not None), key=lambda r: r.ended_at, default=None
    )
    return _Resolved(side, newest.commit if newest else "", None, name)


def _release(ledger: Ledger, app: str, name: str, repository: str | None) -> Release:
    """A release by id prefix or alias, else the release the commit `name` made."""
    try:
        return ledger.find_release(app, name)
    except TerminalError as unknown:
        where = repository or "."
        if not Path(where).is_dir():
            raise
        try:
            commit = git.resolve_commit(where, name)
        except TerminalError:
            raise unknown from None
        made = ledger.release_of_commit(app, commit)
        if made is None:
            raise TerminalError(
                f"commit {commit[:12]} ({name}) made no release of {app}; run `relay run --ref "
                f"{name}` first, or name a release (`relay releases` lists them)"
            ) from None
        return made


def _running(ledger: Ledger, app: str) -> dict[str, dict[str, str]]:
    """Per environment, the image each service should be running (the ledger's `current`)."""
    running: dict[str, dict[str, str]] = {}
    for environment, service in ledger.environments(app):
        record = ledger.current(app, environment, service)
        if record is not None:
            running.setdefault(environment, {})[service] = record.image
    return running


def _commits(repository: str | None, before: str, after: str) -> list[str]:
    if not repository or not before or not after or before == after:
        return []
    checkout = Path(repository) if Path(repository).is_dir() else workdir(repository, after)
    if not (checkout / ".git").exists() and not (checkout / "HEAD").exists():
        return []
    try:
        return git.log(checkout, before, after)
    except TerminalError:
        return [f"(the commits between are not in {repository})"]
