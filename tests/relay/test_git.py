"""relay.git against real git repositories."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relay import git
from relay.errors import TerminalError, TransientError

ID = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run(["git", *ID, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *ID, "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_tree_hash_follows_content_not_commits(repo: Path, tmp_path: Path) -> None:
    one = commit(repo, {"a/app.py": "A = 1\n", "b/app.py": "B = 1\n"}, "one")
    two = commit(repo, {"b/app.py": "B = 2\n"}, "two")
    work = git.checkout(str(repo), two, tmp_path / "work")
    assert git.tree_hash(work, one, "a") == git.tree_hash(work, two, "a")
    assert git.tree_hash(work, one, "b") != git.tree_hash(work, two, "b")


def test_checkout_is_clean_and_at_the_commit(repo: Path, tmp_path: Path) -> None:
    one = commit(repo, {"x.txt": "1\n"}, "one")
    two = commit(repo, {"x.txt": "2\n"}, "two")
    work = git.checkout(str(repo), one, tmp_path / "work")
    (work / "stray.txt").write_text("left by a build")
    again = git.checkout(str(repo), two, tmp_path / "work")
    assert (again / "x.txt").read_text() == "2\n"
    assert not (again / "stray.txt").exists()


def test_resolve_and_describe(repo: Path) -> None:
    sha = commit(repo, {"x.txt": "1\n"}, "first change")
    assert git.resolve_commit(str(repo), "HEAD") == sha
    assert git.commit_info(repo, sha).subject == "first change"
    with pytest.raises(TerminalError, match="'nope' is not a commit"):
        git.resolve_commit(str(repo), "nope")
    with pytest.raises(TerminalError, match="'missing' does not exist"):
        git.tree_hash(repo, sha, "missing")


def test_checkout_fetches_commits_made_after_the_first_clone(repo: Path, tmp_path: Path) -> None:
    one = commit(repo, {"x.txt": "1\n"}, "one")
    git.checkout(str(repo), one, tmp_path / "work")
    two = commit(repo, {"x.txt": "2\n"}, "two")
    assert (git.checkout(str(repo), two, tmp_path / "work") / "x.txt").read_text() == "2\n"


def test_remote_refs_resolve_by_exact_name_and_tags_to_commits(repo: Path) -> None:
    main = commit(repo, {"x.txt": "1\n"}, "on main")
    subprocess.run(["git", "branch", "-m", "main"], cwd=repo, check=True)
    subprocess.run(["git", "checkout", "-qb", "feature/main"], cwd=repo, check=True)
    feature = commit(repo, {"x.txt": "2\n"}, "on feature/main")
    subprocess.run(["git", *ID, "tag", "-a", "v1", "-m", "v1", main], cwd=repo, check=True)
    url = f"file://{repo}"
    assert git.resolve_commit(url, "main") == main, "not feature/main"
    assert git.resolve_commit(url, "feature/main") == feature
    assert git.resolve_commit(url, "v1") == main, "the tagged commit, not the tag object"
    with pytest.raises(TerminalError, match="'nope' is not a branch or tag"):
        git.resolve_commit(url, "nope")


def test_credentials_are_not_repeated_in_errors() -> None:
    assert git.redact("https://x-token:s3cret@example.invalid/a.git") == (
        "https://***@example.invalid/a.git"
    )
    with pytest.raises(TransientError) as failure:  # nothing listens: worth another try
        git.resolve_commit("https://user:s3cret@127.0.0.1:9/none.git", "main")
    assert "s3cret" not in str(failure.value)


@pytest.mark.parametrize("root", [".", "", "/", "./"])
def test_a_service_at_the_repositorys_root_has_the_root_tree(repo: Path, root: str) -> None:
    sha = commit(repo, {"app.py": "A = 1\n", "relay.yaml": "app: one\n"}, "one")
    root_tree = subprocess.run(
        ["git", "rev-parse", f"{sha}^{{tree}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert git.tree_hash(repo, sha, root) == root_tree


def test_log_lists_the_commits_between_newest_first(repo: Path) -> None:
    one = commit(repo, {"x.txt": "1\n"}, "one")
    commit(repo, {"x.txt": "2\n"}, "two")
    three = commit(repo, {"x.txt": "3\n"}, "three")
    assert [line.split(" ", 1)[1] for line in git.log(repo, one, three)] == ["three", "two"]
    assert git.log(repo, three, three) == []


def test_an_unreachable_remote_is_worth_another_try_a_missing_one_is_not(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="git ls-remote"):
        git.resolve_commit("http://127.0.0.1:9/nothing.git", "main")  # nothing listens on 9
    with pytest.raises(TerminalError, match="cannot read repository"):
        git.resolve_commit(str(tmp_path / "missing.git"), "main")


def _checkout_in_process(repository: str, sha: str, dest: str, start: Any) -> None:
    start.wait()
    path = git.checkout(repository, sha, Path(dest))
    assert git.commit_info(path, sha).subject


def test_processes_checking_out_one_commit_at_once_all_get_the_tree(
    repo: Path, tmp_path: Path
) -> None:
    """Service runs of one commit on one machine (a worker's processes) share its checkout: a
    process that found another's unfinished clone once failed (`git rev-parse HEAD`)."""
    sha = commit(repo, {f"services/s{n}/app.py": f"N = {n}\n" for n in range(50)}, "fleet")
    dest = tmp_path / "work" / sha[:12]
    context = multiprocessing.get_context("fork")
    start = context.Barrier(8)
    processes = [
        context.Process(target=_checkout_in_process, args=(str(repo), sha, str(dest), start))
        for _ in range(8)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 8
