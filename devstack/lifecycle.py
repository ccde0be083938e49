"""The stack's operations: ``up`` starts what is not running (idempotent), ``status`` says
what runs, ``down`` stops every process with a pidfile under ``RELAY_HOME`` whose command line
still matches (keeping all data)."""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import time
from collections.abc import Callable, Iterator

from devstack.base_image import base_image_status, ensure_base_image
from devstack.cleanup import remove_managed_containers, stop_orphan_containerd, unmount_leftovers
from devstack.components import (
    POSTGRES,
    create_databases,
    ensure_work_pool,
    pidfile_matches,
    services,
    workers,
)
from devstack.errors import StackError
from devstack.mode import StackMode, load_mode, save_mode
from devstack.model import ComponentStatus, StackStatus, progress_line
from devstack.paths import Paths, stack_paths
from devstack.supervisor import (
    Pending,
    cmdline,
    read_pid,
    running_pid,
    start,
    stop_processes,
    wait_ready,
)
from devstack.tool_images import ensure_tool_images


@contextlib.contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """Serialise concurrent `up`/`down` calls on one RELAY_HOME."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.home / "stack.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def up(progress: Callable[[str], None] = print, mode: StackMode | None = None) -> StackStatus:
    """Start every component that is not running yet; idempotent. Returns the status.

    `mode` (PostgreSQL, how many workers) is remembered; without one, the last is kept."""
    paths = stack_paths()
    paths.check_length()
    t_all = time.monotonic()
    with _locked(paths):
        paths.make_dirs()
        mode = _mode_for(paths, mode)
        pending: list[Pending] = []
        try:
            if mode.postgres:  # the Prefect server's database: before the server
                pg = start(POSTGRES, paths)
                pending.append(pg)
                took = wait_ready(pg, paths)
                made = create_databases(paths)
                state = "running" if pg.proc is None else f"ready in {took:.1f} s"
                progress(progress_line("postgres", f"{state} ({POSTGRES.address(paths)}; {made})"))
            # Start all processes first, then wait: Prefect's start (and its first-time
            # migrations) overlaps with the base image build.
            later = [s for s in services(mode) if s is not POSTGRES]
            for service in later:
                pending.append(start(service, paths))
            for p in pending:
                if p.service is POSTGRES:
                    continue
                if p.service.name == "prefect":
                    t0 = time.monotonic()
                    verb, detail = ensure_base_image(paths)
                    took = time.monotonic() - t0
                    progress(progress_line("base-image", f"{verb} in {took:.1f} s ({detail})"))
                    t0 = time.monotonic()
                    verb, detail = ensure_tool_images(paths)
                    took = time.monotonic() - t0
                    progress(progress_line("tool-images", f"{verb} in {took:.1f} s ({detail})"))
                took = wait_ready(p, paths)
                address = p.service.address(paths)
                if p.service.name == "prefect":
                    address += ", " + ensure_work_pool(paths)
                if p.proc is None:
                    pid = running_pid(p.service, paths)
                    progress(progress_line(p.service.name, f"running (pid {pid}, {address})"))
                else:
                    progress(progress_line(p.service.name, f"ready in {took:.1f} s ({address})"))
            for worker in [start(w, paths) for w in workers(mode)]:
                pending.append(worker)
                took = wait_ready(worker, paths)
                state = "running" if worker.proc is None else f"ready in {took:.1f} s"
                progress(
                    progress_line(worker.service.name, f"{state} ({worker.service.address(paths)})")
                )
        except BaseException:
            # Leave nothing half-started: stop what this call started (not what ran before).
            started = [(p.service.name, p.proc.pid) for p in pending if p.proc is not None]
            if started:
                progress(progress_line("stack", "up failed; stopping what this call started"))
                stop_processes(started, progress)
                for name, _ in started:
                    paths.pidfile(name).unlink(missing_ok=True)
                unmount_leftovers(paths, progress)
            raise
    result = status()
    progress(
        progress_line(
            "stack",
            f"up in {time.monotonic() - t_all:.1f} s ({mode.describe()}; RELAY_HOME={paths.home})",
        )
    )
    return result


def _mode_for(paths: Paths, asked: StackMode | None) -> StackMode:
    """The mode to run in: `asked`, else the last one. A running stack is not switched: its
    processes would be left in the other mode (the workers on the other database)."""
    last = load_mode(paths)
    mode = asked or last
    if mode != last and any(c.running for c in status().components if c.name != "base-image"):
        raise StackError(
            f"the stack runs with {last.describe()}; run `relay stack down` before bringing it "
            f"up with {mode.describe()}"
        )
    save_mode(paths, mode)
    return mode


def status() -> StackStatus:
    """What runs now: each component's name, running, pid, address (cheap; starts nothing)."""
    paths = stack_paths()
    result = StackStatus(paths.home)
    mode = load_mode(paths)
    for service in (*services(mode), *workers(mode)):
        pid = running_pid(service, paths)
        ready = pid is not None and service.ready(paths)
        result.components.append(
            ComponentStatus(service.name, pid is not None, pid, service.address(paths), ready)
        )
        if service.name == "dockerd":
            result.components.append(base_image_status(paths, ready))
    return result


def down(progress: Callable[[str], None] = print) -> None:
    """Stop the stack and every process recorded in ``$RELAY_HOME/run/*.pid``; keeps all data."""
    paths = stack_paths()
    t_all = time.monotonic()
    with _locked(paths):
        remove_managed_containers(paths, progress)
        targets: list[tuple[str, int]] = []
        for pidfile in sorted(paths.run.glob("*.pid")) if paths.run.is_dir() else []:
            name = pidfile.stem
            pid = read_pid(pidfile)
            argv = cmdline(pid) if pid is not None else None
            if pid is None or argv is None:
                pidfile.unlink(missing_ok=True)
                progress(progress_line(name, "not running (stale pidfile removed)"))
            elif not pidfile_matches(name, argv, paths):
                pidfile.unlink(missing_ok=True)
                shown = shlex.join(argv)[:100]
                progress(
                    progress_line(
                        name, f"pid {pid} is not ours ({shown}); left alone, pidfile removed"
                    )
                )
            else:
                targets.append((name, pid))
        stop_processes(targets, progress)
        for name, _ in targets:
            paths.pidfile(name).unlink(missing_ok=True)
        stop_orphan_containerd(paths, progress)
        unmount_leftovers(paths, progress)
    progress(
        progress_line(
            "stack", f"down in {time.monotonic() - t_all:.1f} s (data kept in {paths.home})"
        )
    )
