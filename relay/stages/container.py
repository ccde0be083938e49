"""Run one stage command in a throwaway container, with a copy of the service's sources.

The Docker engine may be remote (`DOCKER_HOST`), so nothing of the worker is bind-mounted: the
service's directory goes in as a tar archive through the API (`put_archive`), and the files the
stage writes (JUnit XML, SARIF) come back the same way (`get_archive`). The copy is writable and
thrown away with the container, so the checkout on the worker is never touched.

What the command gets is only what it is given: `argv` as it is (no shell, and no ENTRYPOINT of
the image wrapping it), the `env` mapping (nothing of the worker's environment), no network
unless asked, no capabilities, no privilege escalation and a bounded number of processes.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container
from requests.exceptions import RequestException

from relay.errors import StageFailed, TerminalError, TransientError

__all__ = [
    "FILE_LIMIT",
    "OUTPUT_LIMIT",
    "PIDS_LIMIT",
    "REPORT_DIR",
    "SOURCE_DIR",
    "StageRun",
    "missing_tool",
    "missing_tool_in",
    "run_in_container",
]

SOURCE_DIR = "/src"
REPORT_DIR = "/relay-reports"
OUTPUT_LIMIT = 20_000  # characters of output kept, the last ones, as relay.stages.host does
# Enough for test runners that fork workers; a fork bomb in a test stops here instead of
# exhausting the engine's host, which runs other stages and the deployed services.
PIDS_LIMIT = 1024
# A collected file is read into the worker's memory; reports are far smaller than this.
FILE_LIMIT = 64 * 1024 * 1024
# Go's os.FileMode type bits (dir, symlink, device, pipe, socket, char device, irregular), as
# get_archive's stat header reports them: anything with one of them is not a regular file.
_GO_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
_LABELS = {"relay.stage": "true"}


@dataclass(frozen=True)
class StageRun:
    """What a stage command did in its container.

    Attributes:
        argv: The command, as run.
        exit_code: Its exit status; a non-zero one is reported here, never raised.
        output: stdout and stderr interleaved, the last `OUTPUT_LIMIT` characters.
        seconds: Wall time of the whole run: copying in, running, copying out.
        files: The collected files that exist, by absolute path in the container.
        image: The image the command ran in.
    """

    argv: list[str]
    exit_code: int
    output: str
    seconds: float
    files: dict[str, bytes]
    image: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_in_container(
    client: docker.DockerClient,
    image: str,
    argv: Sequence[str],
    source: Path,
    *,
    env: Mapping[str, str] | None = None,
    network: Literal["none", "host"] = "none",
    timeout: float = 600,
    collect: Sequence[str] = (),
    name_hint: str = "stage",
    workdir: str = SOURCE_DIR,
) -> StageRun:
    """Run `argv` in a new container of `image`, on a copy of `source` at `SOURCE_DIR`.

    The container is removed whatever happens.

    Args:
        client: The environment's Docker engine.
        image: A local image; it is never pulled.
        argv: The command, run without a shell and without the image's ENTRYPOINT.
        source: The service's directory on the worker; copied, never mounted.
        env: The command's whole environment (on top of the image's own ENV).
        network: "none", or "host" for commands that need the network.
        timeout: Seconds the command may run.
        collect: Absolute paths in the container to read back once it has exited.
        name_hint: What the stage is, for the `relay.stage.name` label.
        workdir: Where the copy of `source` goes and the command runs: `SOURCE_DIR`, or a
            directory under it that keeps the service's path in its repository (tests that
            know their directory's name still find it).

    Returns:
        The exit code, the output's tail and the collected files; a non-zero exit is not raised.

    Raises:
        TerminalError: An empty argv, a `source` that is not a directory, a relative path in
            `collect`.
        StageFailed: The image does not exist, the executable is not in it, the command did
            not finish within `timeout`, or a collected file is over `FILE_LIMIT`.
        TransientError: The Docker engine failed.
    """
    command = list(argv)
    _check_request(command, source, collect)
    _check_workdir(workdir)
    started = time.monotonic()
    container = _create(client, image, command, env, network, name_hint, workdir)
    try:
        try:
            _copy_in(container, source, workdir)
            _start(container, image, command)
            exit_code = _wait(container, image, command, timeout)
            output = _read_output(container)
            files = _collect(container, collect)
        except APIError as exc:
            raise TransientError(
                f"the Docker engine failed while running {command[0]!r} in {image}: "
                f"{exc.explanation}"
            ) from exc
    finally:
        _remove(container)
    return StageRun(command, exit_code, output, time.monotonic() - started, files, image)


def missing_tool(run: StageRun) -> str | None:
    """The tool a command could not find, judged from its output; None when nothing says so.

    A stage image that lacks the test runner or the analyser fails with the interpreter's or
    the shell's words; naming the tool lets the caller say which setting installs it.
    """
    return missing_tool_in(run.output)


def missing_tool_in(output: str) -> str | None:
    """`missing_tool` for any command's output (a stage run on the worker, too)."""
    for pattern in _MISSING_PATTERNS:
        found = pattern.search(output)
        if found:
            return found.group("tool")
    return None


_MISSING_PATTERNS = (
    # `python -m pytest`: "No module named pytest"; `import pytest`: "No module named 'pytest'"
    re.compile(r"No module named '?(?P<tool>[\w.]+?)'?$", re.MULTILINE),
    # A whole line from a shell: "sh: bandit: not found" (busybox), "/bin/sh: 1: bandit: not
    # found" (dash), "bash: line 1: bandit: command not found", "bandit: command not found".
    re.compile(
        r"^(?:[\w/.-]*sh: (?:line )?(?:\d+: )?)?(?P<tool>[\w.+-]+): (?:command )?not found$",
        re.MULTILINE,
    ),
)


# --- before the run -----------------------------------------------------------------------------


def _check_request(argv: list[str], source: Path, collect: Sequence[str]) -> None:
    """Every problem with the request at once, before a container is created."""
    problems = []
    if not argv:
        problems.append("the command is empty; give at least the executable")
    if not source.is_dir():
        problems.append(f"source {str(source)!r} is not a directory")
    problems += [
        f"collect: {path!r} is not an absolute path in the container; e.g. {REPORT_DIR}/x.xml"
        for path in collect
        if not posixpath.isabs(path)
    ]
    if problems:
        raise TerminalError("; ".join(problems))


def _check_workdir(workdir: str) -> None:
    parts = posixpath.normpath(workdir).split("/")
    if not workdir.startswith(SOURCE_DIR) or ".." in workdir.split("/") or parts[:2] != ["", "src"]:
        raise TerminalError(f"workdir {workdir!r}: write {SOURCE_DIR} or a directory under it")


def _create(
    client: docker.DockerClient,
    image: str,
    argv: list[str],
    env: Mapping[str, str] | None,
    network: str,
    name_hint: str,
    workdir: str,
) -> Container:
    try:
        return client.containers.create(
            image,
            command=argv,
            # An image built from a service's Dockerfile may have an ENTRYPOINT; it would wrap
            # the stage command (`entrypoint.sh pytest ...`). An empty one runs argv as given.
            entrypoint=[],
            working_dir=workdir,
            environment=dict(env or {}),
            network_mode=network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT,
            labels={**_LABELS, "relay.stage.name": name_hint},
        )
    except ImageNotFound as exc:
        raise StageFailed(
            f"the stage image {image!r} does not exist on the Docker engine; "
            "build it before running the stage (it is never pulled)"
        ) from exc
    except APIError as exc:
        raise TransientError(f"cannot create a container of {image}: {exc.explanation}") from exc


def _copy_in(container: Container, source: Path, workdir: str) -> None:
    """Extract `_write_archive`'s tar at `/` in the (created, not started) container."""
    with tempfile.TemporaryFile() as archive:
        _write_archive(archive, source, workdir)
        archive.seek(0)
        container.put_archive("/", archive)


def _write_archive(archive: IO[bytes], source: Path, workdir: str = SOURCE_DIR) -> None:
    """A tar of `source` as `<workdir>/...` (its parents created) plus an empty
    `relay-reports/`.

    Symlinks stay symlinks (their targets on the worker are never read), so a link planted
    in the sources cannot carry a worker file into the container. Everything is owned by root
    and writable by all: the image's USER may be anyone, and the copy is thrown away.
    """
    top = posixpath.normpath(workdir).lstrip("/")
    with tarfile.open(fileobj=archive, mode="w") as tar:
        parts = top.split("/")
        for depth in range(1, len(parts) + 1):
            tar.addfile(_directory_entry("/".join(parts[:depth])))
        tar.addfile(_directory_entry(REPORT_DIR.lstrip("/")))
        for path in _walk(source):
            _add(tar, path, posixpath.join(top, path.relative_to(source).as_posix()))


def _walk(directory: Path) -> Iterator[Path]:
    """Every entry under `directory`, parents first, never following a symlink."""
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            yield Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    """Add a directory, a regular file or a symlink; sockets, pipes and devices are skipped."""
    info = path.lstat()
    if stat.S_ISDIR(info.st_mode):
        tar.addfile(_directory_entry(name))
    elif stat.S_ISLNK(info.st_mode):
        entry = _entry(name, tarfile.SYMTYPE, 0o777)
        entry.linkname = os.readlink(path)
        tar.addfile(entry)
    elif stat.S_ISREG(info.st_mode):
        executable = info.st_mode & 0o111
        entry = _entry(name, tarfile.REGTYPE, 0o777 if executable else 0o666)
        entry.size = info.st_size
        entry.mtime = int(info.st_mtime)
        with path.open("rb") as content:
            tar.addfile(entry, content)


def _directory_entry(name: str) -> tarfile.TarInfo:
    return _entry(name, tarfile.DIRTYPE, 0o777)


def _entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = kind
    entry.mode = mode
    entry.uid = entry.gid = 0  # the engine applies the archive's owners as they are
    entry.mtime = int(time.time())
    return entry


# --- the run ------------------------------------------------------------------------------------


def _start(container: Container, image: str, argv: list[str]) -> None:
    try:
        container.start()
    except APIError as exc:
        failure = _exec_failure(str(exc.explanation), image, argv)
        if failure is None:
            raise
        raise failure from exc


class CommandNotFound(StageFailed):
    """The stage image has no such executable: the caller knows which setting installs it."""

    def __init__(self, message: str, tool: str) -> None:
        super().__init__(message, tool)
        self.tool = tool

    def __str__(self) -> str:
        return str(self.args[0])


def _exec_failure(explanation: str, image: str, argv: list[str]) -> StageFailed | None:
    """The command's own fault in a failed start (runc could not exec it); None otherwise."""
    command = " ".join(argv)
    lowered = explanation.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return CommandNotFound(
            f"{argv[0]!r} is not installed in the stage container ({image}); command: {command}",
            posixpath.basename(argv[0]),
        )
    if "permission denied" in lowered or "exec format error" in lowered:
        return StageFailed(
            f"{argv[0]!r} cannot be executed in the stage container ({image}): is it an "
            f"executable for this platform, with its exec bit set? command: {command}"
        )
    return None


def _wait(container: Container, image: str, argv: list[str], timeout: float) -> int:
    """The exit code; past `timeout` the container is killed and StageFailed raised."""
    started = time.monotonic()
    try:
        return int(container.wait(timeout=timeout)["StatusCode"])
    except RequestException as exc:
        # docker-py reports a read timeout on its Unix socket as a ConnectionError; only the
        # clock tells a timeout from a broken engine.
        if time.monotonic() - started < timeout:
            raise TransientError(
                f"lost the Docker engine while waiting for {argv[0]!r} in {image}: {exc}"
            ) from exc
    with contextlib.suppress(APIError):  # it may have exited just now; removal follows anyway
        container.kill()
    raise StageFailed(
        f"{' '.join(argv)} did not finish within {timeout:.0f} s in the container of {image}; "
        f"its last output:\n{_tail(_read_output(container), 20)}"
    )


def _read_output(container: Container) -> str:
    """stdout and stderr interleaved, streamed so that only the tail is ever held."""
    kept = b""
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        kept = (kept + chunk)[-4 * OUTPUT_LIMIT :]  # UTF-8 is at most 4 bytes a character
    return kept.decode(errors="replace")[-OUTPUT_LIMIT:]


def _tail(output: str, lines: int) -> str:
    return "\n".join(output.splitlines()[-lines:])


# --- after the run ------------------------------------------------------------------------------


def _collect(container: Container, paths: Iterable[str]) -> dict[str, bytes]:
    files = {}
    for path in paths:
        content = _fetch(container, path)
        if content is not None:
            files[path] = content
    return files


def _fetch(container: Container, path: str) -> bytes | None:
    """The content of the regular file at `path`; None when it is absent or not a file.

    A symlink is not followed: a report path the command turned into a link to somewhere
    else in the container is treated as not written.
    """
    try:
        chunks, stat_header = container.get_archive(path)
    except NotFound:
        return None
    info = stat_header or {}
    if int(info.get("mode", 0)) & _GO_MODE_TYPE:
        return None
    if int(info.get("size", 0)) > FILE_LIMIT:
        raise StageFailed(
            f"{path} in the stage container is {info['size']} bytes, over the "
            f"{FILE_LIMIT} bytes Relay reads back; write a smaller report"
        )
    return _file_from_tar(chunks)


def _file_from_tar(chunks: Iterable[bytes]) -> bytes | None:
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as buffer:
        for chunk in chunks:
            buffer.write(chunk)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer, mode="r") as tar:
            member = tar.next()
            content = tar.extractfile(member) if member and member.isfile() else None
            return content.read() if content else None


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except NotFound:
        pass  # already gone
    except APIError as exc:
        raise TransientError(
            f"could not remove stage container {container.short_id}: {exc.explanation}"
        ) from exc
