"""A tiny service image for platform and strategy tests: answers its version, and fails a
chosen share of requests with 500 (still naming its version, spread evenly over the requests),
so tests can tell versions and errors apart in real traffic. With a dependency URL it asks that
first and answers 502 when it fails, as a service whose database is down would."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import docker

from relay.images import build_image, push_image
from relay.platforms.docker import DeploySpec
from relay.registry import ImageRef
from relay.traffic import Route

SERVER = """
import itertools, json, os, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
if os.environ.get("CRASH") == "1":
    sys.exit("crashing on purpose")
FAIL = int(os.environ.get("FAIL_PERCENT", "0"))
DEPENDENCY = os.environ.get("DEPENDENCY", "")
COUNT = itertools.count()
def dependency_ok():
    try:
        with urllib.request.urlopen(DEPENDENCY, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = 200
        if self.path != "/healthz" and next(COUNT) * FAIL % 100 < FAIL:
            status = 500
        elif self.path != "/healthz" and DEPENDENCY and not dependency_ok():
            status = 502
        body = json.dumps({"version": os.environ["VERSION"], "port": os.environ["PORT"]}).encode()
        self.send_response(status); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def make_image(
    client: docker.DockerClient,
    tmp: Path,
    repository: str,
    version: str,
    crash: bool = False,
    fail_percent: int = 0,
    dependency: str = "",
) -> str:
    """Build and push the echo image; returns `repository@digest`."""
    context = tmp / version
    context.mkdir()
    (context / "server.py").write_text(SERVER)
    (context / "Dockerfile").write_text(
        "FROM python:3.11-slim\n"
        f"ENV VERSION={version} CRASH={'1' if crash else '0'} FAIL_PERCENT={fail_percent}"
        f" DEPENDENCY={json.dumps(dependency)}\n"
        'COPY server.py /server.py\nUSER 65534\nCMD ["python3", "/server.py"]\n'
    )
    build_image(client, context, "Dockerfile", f"{repository}:{version}", {}, {})
    return f"{repository}@{push_image(client, repository, version)}"


def echo_spec(app: str, route: Route, image: str, health_timeout: float = 20) -> DeploySpec:
    """The echo service of `app` in its `test` environment, at `image`, behind `route`."""
    return DeploySpec(
        app=app,
        environment="test",
        service="echo",
        image=ImageRef.parse(image),
        commit="c",
        tree="t",
        route=route,
        health_timeout=health_timeout,
    )


@dataclass
class Load:
    """A bounded request loop against one URL in a background thread."""

    url: str
    max_seconds: float = 120
    interval: float = 0.01
    log: list[tuple[float, str, int]] = field(default_factory=list)  # (time, version, status)
    transport_errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    self.log.append((time.monotonic(), _version(response.read()), response.status))
            except urllib.error.HTTPError as exc:
                self.log.append((time.monotonic(), _version(exc.read()), exc.code))
            except OSError as exc:
                self.transport_errors.append(repr(exc))
            time.sleep(self.interval)

    def wait_for_more(self, count: int, timeout: float = 20) -> None:
        """Block until `count` more responses arrived (bounded)."""
        target, deadline = len(self.log) + count, time.monotonic() + timeout
        while len(self.log) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load got fewer than {count} answers in {timeout} s")
            time.sleep(0.05)

    def versions(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(v for t, v, _ in self.log if since <= t <= until)


def _version(body: bytes) -> str:
    try:
        return str(json.loads(body)["version"])
    except (ValueError, KeyError):
        return "?"
