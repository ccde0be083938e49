"""Git operations Relay needs: resolve a ref, check out a clean tree, read tree hashes.

A service's *tree hash* (`git rev-parse <commit>:<path>`) identifies its content: two commits
with the same tree for a service produce the same image, so Relay builds once per content.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from relay.errors import RelayError, TerminalError, TransientError


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author: str
    email: str
    subject: str
    committed_at: datetime | None = None  # the committer date: where lead time starts


# What git prints when the network, not the request, failed: worth another try.
_NETWORK = re.compile(
    r"could not resolve host|connection (refused|reset|timed out)|timed out|"
    r"early eof|the remote end hung up|unable to access|temporary failure",
    re.IGNORECASE,
)


def _git(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )
    if proc.returncode != 0:
        message = redact(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        raise TransientError(message) if _NETWORK.search(proc.stderr) else RelayError(message)
    return proc.stdout.strip()


def resolve_commit(repository: str, ref: str) -> str:
    """The full SHA of `ref` in `repository` (a local path, or a URL that git can read)."""
    if not Path(repository).is_dir():
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        return _remote_commit(repository, ref)
    try:
        return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=Path(repository))
    except RelayError as exc:
        raise TerminalError(
            f"{ref!r} is not a commit in {repository}; pass a branch, tag or commit SHA that exists"
        ) from exc


def _remote_commit(repository: str, ref: str) -> str:
    """The commit of branch or tag `ref` on a remote, by exact name (`main` must not match
    `feature/main`); an annotated tag resolves to its commit, not the tag object."""
    try:
        out = _git(["ls-remote", repository, f"refs/heads/{ref}", f"refs/tags/{ref}*"])
    except TransientError:
        raise
    except RelayError as exc:
        raise TerminalError(f"cannot read repository {redact(repository)}: {exc}") from exc
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, tab, name = line.partition("\t")
        if tab:
            refs[name] = sha
    for name in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if name in refs:
            return refs[name]
    raise TerminalError(f"{ref!r} is not a branch or tag of {redact(repository)}")


def redact(url: str) -> str:
    """A repository URL without its credentials (`https://token@host/...`), for messages."""
    return re.sub(r"//[^/@\s']+@", "//***@", url)


def checkout(repository: str, sha: str, dest: Path) -> Path:
    """A clean working tree of `repository` at `sha` in `dest`, reused when it is already there.

    Each commit gets its own directory, so pipelines of different commits never share a working
    tree. The service runs of one commit do, and may be processes of their own (service
    pipelines spread over workers, several on one machine): one at a time makes or checks the
    tree, under a lock file beside it, so none reads a clone another has not finished.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (dest.parent / f"{dest.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _checkout(repository, sha, dest)


def _checkout(repository: str, sha: str, dest: Path) -> Path:
    if (dest / ".git").exists():
        head = _git(["rev-parse", "HEAD"], cwd=dest)
        dirty = _git(["status", "--porcelain", "--ignored"], cwd=dest)
        if head == sha and not dirty:
            return dest
        if not _has_commit(dest, sha):
            _git(["fetch", "--quiet", "origin"], cwd=dest)
        _git(["checkout", "--force", "--detach", sha], cwd=dest)
        _git(["clean", "-ffdx"], cwd=dest)
        return dest
    _git(["clone", "--quiet", "--no-checkout", repository, str(dest)])
    try:
        _git(["checkout", "--quiet", "--detach", sha], cwd=dest)
    except RelayError as exc:
        raise TerminalError(f"commit {sha} is not in {redact(repository)}: {exc}") from exc
    return dest


def _has_commit(repo: Path, sha: str) -> bool:
    try:
        _git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo)
    except RelayError:
        return False
    return True


def tree_hash(checkout_dir: Path, sha: str, path: str) -> str:
    """The git tree hash of `path` at `sha`: the identity of a service's content."""
    relative = PurePosixPath(path.strip("/") or ".").as_posix()
    # `<sha>:.` is not a path git knows: a service at the repository's root is its root tree.
    spec = f"{sha}^{{tree}}" if relative == "." else f"{sha}:{relative}"
    try:
        return _git(["rev-parse", spec], cwd=checkout_dir)
    except RelayError as exc:
        raise TerminalError(f"{path!r} does not exist at commit {sha[:12]}") from exc


def commit_info(checkout_dir: Path, sha: str) -> CommitInfo:
    out = _git(["show", "-s", "--format=%H%x00%an%x00%ae%x00%cI%x00%s", sha], cwd=checkout_dir)
    full, author, email, committed, subject = out.split("\x00", 4)
    return CommitInfo(full, author, email, subject, datetime.fromisoformat(committed))


def changed_files(checkout_dir: Path, base: str, head: str) -> list[str]:
    """Files that differ between two commits, relative to the repository root."""
    try:
        out = _git(["diff", "--name-only", f"{base}..{head}"], cwd=checkout_dir)
    except RelayError as exc:
        raise TerminalError(
            f"cannot compare {base!r} with {head[:12]}: {exc}; pass a commit that exists"
        ) from exc
    return [line for line in out.splitlines() if line]


def log(checkout_dir: Path, base: str, head: str, limit: int = 50) -> list[str]:
    """The commits from `base` (excluded) to `head`, newest first, as `<sha12> <subject>`."""
    if base == head:
        return []
    try:
        out = _git(
            ["log", f"--max-count={limit}", "--format=%h %s", "--abbrev=12", f"{base}..{head}"],
            cwd=checkout_dir,
        )
    except RelayError as exc:
        raise TerminalError(
            f"cannot list the commits from {base[:12]} to {head[:12]}: {exc}"
        ) from exc
    return [line for line in out.splitlines() if line]
