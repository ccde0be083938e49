"""Images the local stack builds from this machine's own programs, because no image registry
can be reached to pull ``haproxy:2.6`` or a base with git:

- ``relay/haproxy:2.6``: Debian's haproxy and its libraries, for HAProxy routers that run as
  containers on the engine (``RELAY_ROUTER_IMAGE``), so that they outlive the worker
  that started them;
- ``relay/worker-base:3.11``: the Python base image plus git, the base of Relay's worker image;
- ``relay/worker:local``: Relay's worker image, built from the project's ``Dockerfile`` on it.

Each program is copied with the libraries ``ldd`` names, as the base image's root filesystem
is (``devstack.rootfs``).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from devstack.base_image import BASE_IMAGE_RELAY
from devstack.docker_api import MANAGED_LABEL, docker_client, image_inspect
from devstack.errors import StackError
from devstack.paths import Paths
from devstack.rootfs import _image_arc, _RootfsTar, _run_time_libraries, _shared_libraries

ROUTER_IMAGE = "relay/haproxy:2.6"
WORKER_BASE_IMAGE = "relay/worker-base:3.11"
WORKER_IMAGE = "relay/worker:local"
REVISION_LABEL = "relay.tool-revision"
REVISION = "2"
HAPROXY = Path("/usr/sbin/haproxy")
GIT = Path("/usr/bin/git")
# git runs some of its own commands from its exec path as `git` (a copy of /usr/bin/git).
GIT_EXEC_LINKS = ("git", "git-upload-pack", "git-receive-pack", "git-upload-archive")
# glibc's compatibility libraries, which python:3.11-slim has and binary wheels load (pydantic-
# core needs librt), but the Python base image does not: none of the services needed them.
WHEEL_LIBRARIES = ("librt.so.1", "libpthread.so.0", "libdl.so.2", "libutil.so.1")
# A FROM-scratch image has no merged /usr yet: the loader is found at /lib64.
MERGED_USR = {top: f"usr/{top}" for top in ("bin", "sbin", "lib", "lib64")}


def _library(name: str) -> str:
    """A library's host path, as the dynamic loader's cache knows it."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in cache.splitlines():
        if line.strip().startswith(f"{name} ") and "=>" in line:
            return line.split("=>", 1)[1].strip()
    raise StackError(f"tool images: {name} not found on this machine (Debian's libc6)")


def _programs_layer(
    dest: Path, programs: list[Path], extra: dict[str, str], libraries: tuple[str, ...] = ()
) -> None:
    """A tar of `programs` at their own paths, the libraries they load and `libraries` (by
    name), and `extra` symlinks (image path -> target)."""
    for program in programs:
        if not program.exists():
            raise StackError(f"tool images: {program} not found: run scripts/install-deps")
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        fs = _RootfsTar(tar)
        for program in programs:
            fs.file(program, _image_arc(str(program)))
        for arc, target in extra.items():
            fs.symlink(arc, target)
        named = [_library(name) for name in libraries]
        for lib in [*_shared_libraries(programs), *_run_time_libraries(), *named]:
            fs.file(Path(lib), _image_arc(lib))


def _build(paths: Paths, client: Any, tag: str, dockerfile: str, layer: Path) -> None:
    with tempfile.TemporaryDirectory(dir=paths.tmp) as ctx:
        shutil.copy(layer, Path(ctx, "layer.tar"))
        Path(ctx, "Dockerfile").write_text(dockerfile)
        client.images.build(
            path=ctx, tag=tag, network_mode="host", pull=False, rm=True, forcerm=True
        )


def _current(paths: Paths, tag: str) -> bool:
    info = image_inspect(paths, tag)
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    return info is not None and labels.get(REVISION_LABEL) == REVISION


def ensure_tool_images(paths: Paths) -> tuple[str, str]:
    """Build the router and worker-base images unless this machine has them. Returns (verb,
    detail) for the progress line."""
    wanted = [t for t in (ROUTER_IMAGE, WORKER_BASE_IMAGE) if not _current(paths, t)]
    if not wanted:
        return "present", f"{ROUTER_IMAGE}, {WORKER_BASE_IMAGE}"
    client = docker_client(paths)
    labels = f'LABEL {REVISION_LABEL}="{REVISION}" {MANAGED_LABEL}="true"'
    try:
        with tempfile.TemporaryDirectory(dir=paths.tmp) as work:
            if ROUTER_IMAGE in wanted:
                layer = Path(work, "haproxy.tar")
                _programs_layer(layer, [HAPROXY], MERGED_USR)
                dockerfile = (
                    f'FROM scratch\nADD layer.tar /\n{labels}\nCMD ["/usr/sbin/haproxy", "-v"]\n'
                )
                _build(paths, client, ROUTER_IMAGE, dockerfile, layer)
            if WORKER_BASE_IMAGE in wanted:
                layer = Path(work, "git.tar")
                links = {f"usr/lib/git-core/{name}": "/usr/bin/git" for name in GIT_EXEC_LINKS}
                _programs_layer(layer, [GIT], links, WHEEL_LIBRARIES)
                dockerfile = f"FROM {BASE_IMAGE_RELAY}\nADD layer.tar /\n{labels}\n"
                _build(paths, client, WORKER_BASE_IMAGE, dockerfile, layer)
    finally:
        client.close()
    return "built", f"{ROUTER_IMAGE}, {WORKER_BASE_IMAGE}"


def build_worker_image(paths: Paths, project: Path, tag: str = WORKER_IMAGE) -> str:
    """Relay's worker image from `project`'s Dockerfile on the stack's engine; the engine's
    layer cache makes a rebuild after a code change take seconds. Returns the image id."""
    ensure_tool_images(paths)
    client = docker_client(paths, timeout=1800)
    try:
        image, _ = client.images.build(
            path=str(project),
            tag=tag,
            buildargs={"BASE_IMAGE": WORKER_BASE_IMAGE},
            network_mode="host",
            pull=False,
            rm=True,
            forcerm=True,
            labels={MANAGED_LABEL: "true"},
        )
    except Exception as exc:  # docker.errors.BuildError carries the build log
        log = "".join(str(step.get("stream", "")) for step in getattr(exc, "build_log", []))
        raise StackError(f"worker image: the build failed: {exc}\n{log[-3000:]}") from exc
    finally:
        client.close()
    return str(image.id)
