"""Long-running processes by PID: pidfiles, starting and waiting, stopping, and the guard that a
PID still runs the command line that was started (PIDs get recycled).

A `Service` describes one process; `devstack.components` holds the table of them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.model import progress_line
from devstack.paths import Paths

# Marks each start in a component's log. Kept as it was before the stack moved to devstack/:
# the logs under RELAY_HOME persist, and the worker's readiness check splits at the latest one.
LOG_MARKER = "=== relay.stack"


@dataclass(frozen=True)
class Service:
    """A long-running process of the stack. Only ``devstack.components`` knows every one."""

    name: str
    address: Callable[[Paths], str]
    argv: Callable[[Paths], list[str]]
    is_ours: Callable[[list[str], Paths], bool]
    ready: Callable[[Paths], bool]
    timeout: float
    port: tuple[str, int] | None = None  # (host, port) that must be free before starting
    port_env: str = ""
    env: Callable[[Paths], dict[str, str]] | None = None
    prepare: Callable[[Paths], None] | None = None
    writes_own_pidfile: bool = False


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None if there is none (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # exited; its parent has not reaped it yet
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def programs(argv: list[str]) -> set[str]:
    """Names a command line runs: ``python -m prefect`` → {python, prefect}; a script run by an
    interpreter (``python3 /venv/bin/moto_server``) → {python3, moto_server}."""
    if not argv:
        return set()
    first = Path(argv[0]).name
    names = {first}
    if first.startswith(("python", "sh", "bash")):
        if "-m" in argv[1:-1]:
            names.add(argv[argv.index("-m") + 1])
        elif len(argv) > 1 and not argv[1].startswith("-"):
            names.add(Path(argv[1]).name)
    return names


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join("    " + line for line in text)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def require(program: str, hint: str) -> str:
    """The path of `program` (``/usr/sbin`` and ``/sbin`` included); StackError with `hint`."""
    path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise StackError(f"{program} not found: {hint}")
    return path


def running_pid(service: Service, paths: Paths) -> int | None:
    """The PID in `service`'s pidfile if that process still runs `service`'s command line."""
    pid = read_pid(paths.pidfile(service.name))
    if pid is None:
        return None
    argv = cmdline(pid)
    if argv is None or not service.is_ours(argv, paths):
        return None
    return pid


@dataclass
class Pending:
    service: Service
    started: float
    proc: subprocess.Popen[bytes] | None  # None: was already running


def start(service: Service, paths: Paths) -> Pending:
    """Start `service` unless it runs already; does not wait for it."""
    t0 = time.monotonic()
    if running_pid(service, paths) is not None:
        return Pending(service, t0, None)
    if service.prepare is not None:
        service.prepare(paths)
    if service.port is not None and not 0 < service.port[1] < 65536:
        raise StackError(
            f"{service.name}: {service.port_env}={os.environ.get(service.port_env)!r} is not a "
            "valid port; use a free port number between 1 and 65535"
        )
    if service.port is not None and _port_in_use(*service.port):
        host, port = service.port
        raise StackError(
            f"{service.name}: {host}:{port} is already in use by a process Relay did not start "
            f"(no live {paths.pidfile(service.name)}). Stop that process, or set "
            f"{service.port_env} to another port"
        )
    argv = service.argv(paths)
    log = paths.log(service.name)
    with open(log, "ab") as out:
        out.write(f"\n{LOG_MARKER} {time.strftime('%F %T')}: {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths.home,
                env=service.env(paths) if service.env else None,
                start_new_session=True,
            )
        except OSError as e:
            raise StackError(f"{service.name}: cannot start {argv[0]}: {e}") from e
    if not service.writes_own_pidfile:
        paths.pidfile(service.name).write_text(f"{proc.pid}\n")
    return Pending(service, t0, proc)


def wait_ready(pending: Pending, paths: Paths) -> float:
    """Wait until `pending`'s service answers; returns the seconds since it was started."""
    service, proc = pending.service, pending.proc
    log = paths.log(service.name)
    deadline = pending.started + service.timeout
    while not service.ready(paths):
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"{service.name} exited with code {proc.returncode} while starting; "
                f"see {log}:\n{_tail(log)}"
            )
        if proc is None and running_pid(service, paths) is None:
            raise StackError(f"{service.name} stopped while waiting for it; see {log}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{service.name} did not become ready at {service.address(paths)} within "
                f"{service.timeout:.0f} s; see {log}:\n{_tail(log)}\n"
                "Run `python -m devstack down` and `up` again; if it persists, read the log"
            )
        time.sleep(0.05)
    return time.monotonic() - pending.started


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_processes(targets: list[tuple[str, int]], progress: Callable[[str], None]) -> None:
    """SIGTERM all (in parallel), wait bounded, SIGKILL what is left."""
    t0 = time.monotonic()
    # dockerd shuts down containerd itself; signalling its whole group would race that.
    for name, pid in targets:
        # PostgreSQL's SIGTERM waits for its clients to leave; SIGINT ends their sessions.
        sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
        _signal(pid, sig, group=name != "dockerd")
    grace = {name: 20.0 if name == "dockerd" else 10.0 for name, _ in targets}
    left = dict(targets)
    while left:
        for name, pid in list(left.items()):
            if cmdline(pid) is None:
                del left[name]
                progress(
                    progress_line(name, f"stopped in {time.monotonic() - t0:.1f} s (pid {pid})")
                )
            elif time.monotonic() - t0 > grace[name]:
                _signal(pid, signal.SIGKILL, group=True)
                del left[name]
                progress(progress_line(name, f"killed after {grace[name]:.0f} s (pid {pid})"))
        time.sleep(0.05)
