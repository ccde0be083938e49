"""What ``down`` clears besides the processes in pidfiles: the containers Relay labelled as
managed, a containerd that a hard-killed dockerd left running, and dockerd's leftover mounts."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devstack.docker_api import MANAGED_LABEL, docker_client, docker_ready
from devstack.model import progress_line
from devstack.paths import Paths
from devstack.supervisor import cmdline, programs, read_pid, stop_processes


def remove_managed_containers(paths: Paths, progress: Callable[[str], None]) -> None:
    if not docker_ready(paths):
        return
    t0 = time.monotonic()
    client = docker_client(paths, timeout=60)
    try:
        containers = client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
        for c in containers:
            with contextlib.suppress(Exception):  # already gone (auto-remove) is fine
                c.remove(force=True)
    finally:
        client.close()
    if containers:
        took = time.monotonic() - t0
        progress(progress_line("containers", f"removed {len(containers)} in {took:.1f} s"))


def stop_orphan_containerd(paths: Paths, progress: Callable[[str], None]) -> None:
    """A dockerd killed hard leaves its containerd running; stop it too."""
    pidfile = paths.exec_root / "containerd" / "containerd.pid"
    pid = read_pid(pidfile)
    argv = cmdline(pid) if pid else None
    if pid and argv and "containerd" in programs(argv) and str(paths.exec_root) in " ".join(argv):
        stop_processes([("containerd", pid)], progress)


def unmount_leftovers(paths: Paths, progress: Callable[[str], None]) -> None:
    """dockerd leaves e.g. <exec-root>/netns/default mounted after it exits."""
    prefix = str(paths.docker_dir) + "/"
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            mp = fields[1].encode().decode("unicode_escape")  # \040 for spaces
            if mp.startswith(prefix):
                mounts.append(mp)
    for mp in sorted(set(mounts), key=len, reverse=True):
        res = subprocess.run(["umount", mp], capture_output=True, text=True)
        if res.returncode != 0:
            res = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
        if res.returncode != 0:
            progress(progress_line("mounts", f"could not unmount {mp}: {res.stderr.strip()}"))
    if mounts:
        progress(progress_line("mounts", f"unmounted {len(mounts)} under {paths.docker_dir}"))
