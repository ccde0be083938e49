"""Run a command on the worker as a subprocess: the stages of a `runner: host` service, the
application's end-to-end tests, and Relay's own tools (checkov).

Stage commands come from `relay.yaml`, so they are argv lists run without a shell: a manifest
cannot smuggle shell syntax into the worker, and the worker's environment is not handed on
beyond a few harmless variables. Output is captured (bounded) so that a failed stage can show
its tail in the error and in the run's artifacts. In a container instead: `container.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.errors import StageFailed

OUTPUT_LIMIT = 20_000
# The only variables of the worker's environment a stage command sees. The commands come from
# the repository being built, and their output lands in the Prefect UI: the worker's
# credentials (AWS keys, API keys, tokens) must not be one `env` away.
INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER")


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    exit_code: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def tool_path() -> str:
    """PATH with Relay's own interpreter first, so `python -m pytest` means the worker's Python."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def run_command(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> CommandResult:
    """Run argv in cwd; never raises for a non-zero exit (the caller judges), only for a timeout."""
    inherited = {name: os.environ[name] for name in INHERITED if name in os.environ}
    full_env = {**inherited, "PATH": tool_path(), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StageFailed(
            f"{' '.join(argv)} did not finish within {timeout:.0f} s in {cwd}"
        ) from exc
    except FileNotFoundError as exc:
        raise StageFailed(
            f"{argv[0]!r} is not installed on this worker (command: {' '.join(argv)}); "
            "install it or change the command in relay.yaml"
        ) from exc
    output = proc.stdout[-OUTPUT_LIMIT:]
    return CommandResult(list(argv), proc.returncode, output, time.monotonic() - started)
