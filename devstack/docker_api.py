"""The stack's Docker engine: raw Engine API calls over its unix socket (fast; no SDK import),
and the docker SDK client for what needs more (builds, runs, imports)."""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

from devstack.errors import StackError
from devstack.paths import Paths

# Containers and images that `down` may remove carry this label (other Relay code sets it).
MANAGED_LABEL = "relay.managed"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._unix_path)
        self.sock = sock


def docker_api(
    paths: Paths, path: str, *, method: str = "GET", timeout: float = 2.0
) -> tuple[int, bytes] | None:
    """A raw Docker Engine API call over the stack's socket (fast; no SDK import)."""
    if not paths.docker_sock.exists():
        return None
    conn = _UnixHTTPConnection(paths.docker_sock, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def docker_ready(paths: Paths) -> bool:
    r = docker_api(paths, "/_ping", timeout=1.0)
    return r is not None and r[0] == 200


def image_inspect(paths: Paths, ref: str) -> dict[str, Any] | None:
    r = docker_api(paths, f"/images/{ref}/json")
    if r is None or r[0] != 200:
        return None
    data: dict[str, Any] = json.loads(r[1])
    return data


def docker_client(paths: Paths, timeout: int = 300) -> Any:
    try:
        import docker
    except ImportError as e:
        raise StackError(
            "the docker SDK is not installed in this Python "
            f"({sys.executable}): pip install docker (it is one of Relay's dependencies)"
        ) from e
    return docker.DockerClient(base_url=paths.docker_host, timeout=timeout)
