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
    """The manifest as of this commit: a bad one stops the pipeline before anything is built."""
    return load_manifest(checkout.path / manifest_file)


@task(name="service-tree-hash", cache_policy=NO_CACHE)
def service_tree_hash(checkout: Checkout, service_path: str) -> str:
    return git.tree_hash(checkout.path, checkout.commit, service_path)
