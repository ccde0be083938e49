"""Source stage: a clean checkout of the commit and the manifest it carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from relay import git
from relay.manifest import Manifest, load_manifest
from relay.settings import workdir
from tasks.support.retry import on_transient


class Checkout(BaseModel):
    repository: str
    commit: str
    path: Path
    author: str
    author_email: str
    subject: str
    committed_at: datetime | None = None  # when the commit was made: lead time starts here


@task(name="checkout-commit", cache_policy=NO_CACHE, **on_transient(2, [2, 10]))
def checkout_commit(repository: str, ref: str) -> Checkout:
    """Check out `ref` of `repository` into a working tree of its own."""
    sha = git.resolve_commit(repository, ref)
    path = git.checkout(repository, sha, workdir(repository, sha))
    info = git.commit_info(path, sha)
    return Checkout(
        repository=repository,
        commit=sha,
        path=path,
        author=info.author,
        author_email=info.email,
        subject=info.subject,
        committed_at=info.committed_at,
    )


@task(name="read-manifest", cache_policy=NO_CACHE)
def read_manifest(checkout: Checkout, manifest_file: str = "relay.yaml") -> Manifest:
    """The manifest as of this commit: a bad one stops the pipeline before anything is built.

    Messages name it as the user knows it, in their repository, not in Relay's checkout cache."""
    return load_manifest(
        checkout.path / manifest_file, shown_as=shown_manifest(checkout, manifest_file)
    )


def shown_manifest(checkout: Checkout, manifest_file: str) -> str:
    """`/home/me/shop/relay.yaml` for a local repository, `relay.yaml (https://… at
    1a2b3c4d5e6f)` for a remote one."""
    local = Path(checkout.repository)
    if local.is_dir():
        return str(local / manifest_file)
    return f"{manifest_file} ({checkout.repository} at {checkout.commit[:12]})"


@task(name="service-tree-hash", cache_policy=NO_CACHE)
def service_tree_hash(checkout: Checkout, service_path: str) -> str:
    return git.tree_hash(checkout.path, checkout.commit, service_path)
