"""Where a service's stage commands run, and one way to run them there.

A `StageSite` is the service's directory plus the stage image its commands run in (built from
the Dockerfile's test target, a stage image with its setup, or the service's own image), or no
image: on the worker, with Relay's own interpreter (`runner: host`, the exception). The
commands, their outputs and their reports are the same either way: a report is written into
`report_dir` (JUnit XML) or into the service's directory (a SARIF file a tool writes there), and
comes back by name.
"""

from __future__ import annotations

import posixpath
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import docker

from relay.errors import TerminalError
from relay.stages.container import REPORT_DIR, SOURCE_DIR, run_in_container
from relay.stages.host import run_command

__all__ = ["StageResult", "StageSite", "run_stage"]


@dataclass(frozen=True)
class StageSite:
    """A service's directory, and the image its stage commands run in (None: the worker).

    In a container the directory is copied to `inside`: under `/src`, at the service's path in
    its repository (`/src/services/orders`), so that tests which know the name of their
    directory find it as they do in a checkout.
    """

    directory: Path
    image: str | None = None
    inside: str = SOURCE_DIR

    @classmethod
    def of(cls, directory: Path, path_in_repository: str, image: str | None) -> StageSite:
        inside = PurePosixPath(SOURCE_DIR, path_in_repository).as_posix()
        return cls(directory, image, posixpath.normpath(inside))

    @property
    def where(self) -> str:
        return f"a container of {self.image}" if self.image else "the worker (runner: host)"

    def report_dir(self, token: str) -> str:
        """Where a command writes its reports: the container's report directory, or a private
        folder in the service's directory on the worker (`token` keeps concurrent runs apart)."""
        if self.image is not None:
            return REPORT_DIR
        return str(self.directory / f".relay-reports-{token}")


@dataclass(frozen=True)
class StageResult:
    """What a stage command did: as `relay.stages.host.CommandResult`, plus its reports."""

    argv: list[str]
    exit_code: int
    output: str
    seconds: float
    where: str
    reports: dict[str, bytes] = field(default_factory=dict)  # report name -> content
    files: dict[str, bytes] = field(default_factory=dict)  # path in the service -> content

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_stage(
    client: docker.DockerClient | None,
    site: StageSite,
    argv: Sequence[str],
    *,
    token: str = "",
    env: Mapping[str, str] | None = None,
    network: Literal["none", "host"] = "none",
    timeout: float = 600,
    reports: Sequence[str] = (),
    files: Sequence[str] = (),
) -> StageResult:
    """Run `argv` at `site`: `reports` are names in `site.report_dir(token)`, `files` paths
    relative to the service's directory, read back once the command ended (absent when not
    written). `client` is the environment's Docker engine (None only for the worker)."""
    token = token or uuid.uuid4().hex[:12]
    for path in files:
        if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            raise TerminalError(f"{path!r}: write a path inside the service's directory")
    if site.image is None:
        return _on_worker(site, list(argv), token, env, timeout, reports, files)
    if client is None:
        raise TerminalError(f"a Docker engine is needed to run {argv[0]!r} in {site.image}")
    report_paths = {name: f"{REPORT_DIR}/{name}" for name in reports}
    file_paths = {path: f"{site.inside}/{path}" for path in files}
    run = run_in_container(
        client,
        site.image,
        argv,
        site.directory,
        env=env,
        network=network,
        timeout=timeout,
        collect=[*report_paths.values(), *file_paths.values()],
        name_hint=argv[0] if argv else "stage",
        workdir=site.inside,
    )
    return StageResult(
        argv=run.argv,
        exit_code=run.exit_code,
        output=run.output,
        seconds=run.seconds,
        where=site.where,
        reports={n: run.files[p] for n, p in report_paths.items() if p in run.files},
        files={f: run.files[p] for f, p in file_paths.items() if p in run.files},
    )


def _on_worker(
    site: StageSite,
    argv: list[str],
    token: str,
    env: Mapping[str, str] | None,
    timeout: float,
    reports: Sequence[str],
    files: Sequence[str],
) -> StageResult:
    report_dir = Path(site.report_dir(token))
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        for path in files:  # a report left by an earlier run is not this run's
            (site.directory / path).unlink(missing_ok=True)
        result = run_command(argv, cwd=site.directory, env=env, timeout=timeout)
        found = {n: (report_dir / n).read_bytes() for n in reports if (report_dir / n).is_file()}
        written = {
            f: (site.directory / f).read_bytes() for f in files if (site.directory / f).is_file()
        }
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
    return StageResult(
        argv=result.argv,
        exit_code=result.exit_code,
        output=result.output,
        seconds=result.seconds,
        where=site.where,
        reports=found,
        files=written,
    )
