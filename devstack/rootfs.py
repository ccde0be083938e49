"""The base image's root filesystem, written straight into a tar from this machine: Debian's
``/usr/bin/python3.11`` and its stdlib, the libraries ``ldd`` names (and those glibc opens at run
time), busybox-static for ``/bin/sh``, pip copied from the venv that runs Relay, and a minimal
``/etc``. ``devstack.base_image`` imports it into the engine."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from devstack.errors import StackError
from devstack.supervisor import require

# Libraries glibc opens itself at run time, which `ldd` does not name.
_LOADED_AT_RUN_TIME = ("libgcc_s.so.1",)
HOST_PYTHON = Path("/usr/bin/python3.11")
HOST_STDLIB = Path("/usr/lib/python3.11")
BUSYBOX = Path("/bin/busybox")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Not copied from the stdlib: tests and GUI/tooling (size); ensurepip (pip is copied instead);
# config-* (a 25 MB static libpython); EXTERNALLY-MANAGED (Debian's PEP 668 marker would make
# `RUN pip install ...` in application Dockerfiles fail).
STDLIB_EXCLUDE = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "dist-packages",
        "site-packages",
        "EXTERNALLY-MANAGED",
    }
)


class _RootfsTar:
    """Writes a root filesystem straight into a tar file (root-owned, no staging directory)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.names: set[str] = set()
        self.now = int(time.time())

    def _info(self, arc: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arc)
        info.type, info.mode, info.mtime = kind, mode, self.now
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, arc: str, mode: int = 0o755) -> None:
        arc = arc.strip("/")
        if not arc or arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        self.names.add(arc)
        self.tar.addfile(self._info(arc, tarfile.DIRTYPE, mode))

    def data(self, arc: str, content: bytes, mode: int = 0o644) -> None:
        arc = arc.strip("/")
        self.dir(os.path.dirname(arc))
        info = self._info(arc, tarfile.REGTYPE, mode)
        info.size = len(content)
        self.names.add(arc)
        self.tar.addfile(info, io.BytesIO(content))

    def file(self, host: Path, arc: str) -> None:
        """Copy a host file (symlinks followed) to `arc`, keeping its mode."""
        arc = arc.strip("/")
        if arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        st = host.stat()
        info = self._info(arc, tarfile.REGTYPE, st.st_mode & 0o7777)
        info.size, info.mtime = st.st_size, int(st.st_mtime)
        self.names.add(arc)
        with open(host, "rb") as f:
            self.tar.addfile(info, f)

    def symlink(self, arc: str, target: str) -> None:
        arc = arc.strip("/")
        if arc in self.names:
            return
        self.dir(os.path.dirname(arc))
        info = self._info(arc, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.names.add(arc)
        self.tar.addfile(info)

    def tree(
        self, host_dir: Path, arc_dir: str, exclude: Callable[[str], bool] = lambda _: False
    ) -> None:
        """Copy a directory tree without __pycache__ and without the top-level names for which
        `exclude` is true."""
        for root, dirs, files in os.walk(host_dir):
            top = Path(root) == host_dir
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (top and exclude(d)))
            rel = os.path.relpath(root, host_dir)
            arc_root = arc_dir if rel == "." else f"{arc_dir}/{rel}"
            self.dir(arc_root)
            for name in sorted(files):
                if top and exclude(name):
                    continue
                host = Path(root) / name
                if host.exists():  # skip dangling symlinks
                    self.file(host, f"{arc_root}/{name}")


def _stdlib_excluded(name: str) -> bool:
    return name in STDLIB_EXCLUDE or name.startswith("config-3")


def _image_arc(host_path: str) -> str:
    """Where a host library goes in the merged-/usr image (/lib/x → usr/lib/x)."""
    p = host_path.lstrip("/")
    for top in ("lib/", "lib64/", "lib32/", "bin/", "sbin/"):
        if p.startswith(top):
            return "usr/" + p
    return p


def _shared_libraries(binaries: list[Path]) -> list[str]:
    """Every library and the loader that `ldd` names for `binaries` (host paths)."""
    res = subprocess.run(["ldd", *map(str, binaries)], capture_output=True, text=True)
    libs: set[str] = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target == "not":
                raise StackError(
                    f"base-image: ldd cannot find a library of the host python: {line}"
                )
            if target.startswith("/"):
                libs.add(target)
        elif parts and parts[0].startswith("/") and line.startswith(("\t", " ")):
            libs.add(parts[0])  # the loader, e.g. /lib64/ld-linux-x86-64.so.2
    return sorted(libs)


def _run_time_libraries() -> list[str]:
    """Host paths of `_LOADED_AT_RUN_TIME`, as the dynamic loader's cache knows them."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    found = []
    for name in _LOADED_AT_RUN_TIME:
        paths = [
            line.split("=>", 1)[1].strip()
            for line in cache.splitlines()
            if line.strip().startswith(f"{name} ") and "=>" in line
        ]
        if not paths:
            raise StackError(f"base-image: {name} not found on the host (Debian's libgcc-s1)")
        found.append(paths[0])
    return found


def _pip_source() -> tuple[Path, Path | None]:
    spec = importlib.util.find_spec("pip")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"base-image: pip is not installed in {sys.executable}; cannot copy it")
    pip_dir = Path(next(iter(spec.submodule_search_locations)))
    dist_info: Path | None = None
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        version = importlib.metadata.version("pip")
        candidate = pip_dir.parent / f"pip-{version}.dist-info"
        dist_info = candidate if candidate.is_dir() else None
    return pip_dir, dist_info


def _image_site_packages() -> str:
    """The first /usr/local site dir Debian's python3.11 puts on sys.path (pip goes there)."""
    res = subprocess.run(
        [str(HOST_PYTHON), "-S", "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
    )
    for line in res.stdout.splitlines():
        if line.startswith("/usr/local/lib/python3"):
            return line.strip()
    for line in res.stdout.splitlines():
        if line.strip():
            return line.strip()
    return "/usr/local/lib/python3.11/dist-packages"


_PIP_LAUNCHER = b"""#!/usr/bin/python3
# pip launcher written by devstack (pip copied from Relay's venv)
import re
import sys
from pip._internal.cli.main import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def write_rootfs(dest: Path) -> dict[str, str]:
    """Write the base image's root filesystem as a tar; returns facts for the image labels."""
    for need, hint in (
        (HOST_PYTHON, "needs Debian's python3.11"),
        (BUSYBOX, "needs Debian's busybox-static"),
        (CA_BUNDLE, "needs Debian's ca-certificates"),
    ):
        if not need.exists():
            raise StackError(f"base-image: {need} not found: run scripts/install-deps ({hint})")
    require("ldd", "install Debian's libc-bin")
    site_dir = _image_site_packages()
    pip_dir, pip_dist_info = _pip_source()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        fs = _RootfsTar(tar)
        # merged /usr, like Debian 12
        for top in ("bin", "sbin", "lib", "lib64"):
            fs.dir(f"usr/{top}")
            fs.symlink(top, f"usr/{top}")
        for d in ("etc", "root", "home", "usr/local/bin", site_dir, "var/lib", "run"):
            fs.dir(d, 0o700 if d == "root" else 0o755)
        fs.dir("tmp", 0o1777)
        fs.dir("var/tmp", 0o1777)
        # the interpreter, its stdlib, and every shared library ldd names for them
        fs.file(HOST_PYTHON, "usr/bin/python3.11")
        fs.symlink("usr/bin/python3", "python3.11")
        fs.symlink("usr/bin/python", "python3.11")
        fs.tree(HOST_STDLIB, "usr/lib/python3.11", _stdlib_excluded)
        dynload = sorted((HOST_STDLIB / "lib-dynload").glob("*.so"))
        for lib in [*_shared_libraries([HOST_PYTHON, *dynload]), *_run_time_libraries()]:
            fs.file(Path(lib), _image_arc(lib))
        # a shell: busybox-static and its applets as symlinks in /bin (= /usr/bin)
        fs.file(BUSYBOX, "usr/bin/busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                fs.symlink(f"usr/bin/{applet}", "busybox")
        # pip, copied from the venv that runs Relay
        fs.tree(pip_dir, f"{site_dir}/pip")
        if pip_dist_info is not None:
            fs.tree(pip_dist_info, f"{site_dir}/{pip_dist_info.name}")
        for name in ("pip", "pip3", "pip3.11"):
            fs.data(f"usr/local/bin/{name}", _PIP_LAUNCHER, 0o755)
        # /etc: users, name resolution, CA certificates
        fs.data(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        fs.data("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        fs.data("etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        fs.data("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
        fs.file(CA_BUNDLE, "etc/ssl/certs/ca-certificates.crt")
        fs.symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")
        fs.symlink("usr/lib/ssl/certs", "/etc/ssl/certs")
    version = subprocess.run(
        [str(HOST_PYTHON), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "python": version,
        "pip": importlib.metadata.version("pip"),
        "site": site_dir,
    }
