"""The demo's application repository: `examples/shop` turned into a real git repository.

The copy is synced and committed only when the example changed, so running the demo twice
gives the same commit, and Relay rebuilds nothing the second time.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", ".relay-*.xml")
AUTHOR = ["-c", "user.name=Relay Demo", "-c", "user.email=demo@relay.invalid"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *AUTHOR, *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def sync_repository(source: Path, repo: Path, message: str = "Update the shop example") -> str:
    """Make `repo` a git repository whose HEAD holds `source`'s files; returns HEAD's SHA."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "--quiet", "--initial-branch=main")
    for entry in repo.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.copytree(source, repo, ignore=IGNORED, dirs_exist_ok=True)
    _git(repo, "add", "--all")
    if _git(repo, "status", "--porcelain"):
        _git(repo, "commit", "--quiet", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def commit_change(repo: Path, path: str, old: str, new: str, message: str) -> str:
    """Replace `old` with `new` in one file of the demo repository and commit it."""
    file = repo / path
    text = file.read_text()
    if old not in text:
        raise ValueError(f"{path} does not contain the text the demo changes; is it the example?")
    file.write_text(text.replace(old, new, 1))
    _git(repo, "commit", "--quiet", "--all", "-m", message)
    return _git(repo, "rev-parse", "HEAD")
