"""Test set-up for this service (its directory is the parent of tests/).

- Loads ../app.py by path as the module `<service>_app` (e.g. `orders_app`), so unit tests can
  `import orders_app as app` whatever the working directory, and the four services' `app.py`
  files never shadow one another when several services are tested in one pytest session.
- Integration helpers: `service_url("orders")` reads ORDERS_URL or skips the test; `http(...)`
  makes one JSON request; `spawn_service(env)` runs this service's app.py as a process on a free
  127.0.0.1 port (output in a log file) and kills exactly that process after the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SERVICE_DIR = Path(__file__).resolve().parent.parent
SERVICE = SERVICE_DIR.name
APP_PATH = SERVICE_DIR / "app.py"


def _load_app():
    name = f"{SERVICE.replace('-', '_')}_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_load_app()


# --- HTTP --------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxies


@dataclass
class Response:
    status: int
    headers: Any = field(default_factory=dict)  # case-insensitive (HAProxy lowercases names)
    body: dict | list | None = None


def http_request(
    method: str,
    url: str,
    body=None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Response:
    """One request; `body` is sent as JSON, `raw` as is. Never raises for 4xx/5xx."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            status, resp_headers, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, resp_headers, payload = exc.code, exc.headers, exc.read()
    try:
        parsed = json.loads(payload) if payload else None
    except json.JSONDecodeError:
        parsed = None
    return Response(status, resp_headers, parsed)


def require_url(service: str) -> str:
    var = service.upper().replace("-", "_") + "_URL"
    value = os.environ.get(var, "").strip()
    if not value:
        pytest.skip(f"{var} is not set: no running {service} service to test against")
    return value.rstrip("/")


@pytest.fixture
def http():
    return http_request


@pytest.fixture
def service_url():
    return require_url


# --- running this service as a process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(service: Spawned, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise AssertionError(
                f"{SERVICE} exited early with {service.proc.returncode}: {service.log()}"
            )
        try:
            if http_request("GET", service.url + "/healthz", timeout=0.5).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{SERVICE} did not become healthy at {service.url}: {service.log()}")


@pytest.fixture
def closed_url():
    """A loopback URL where nothing listens: calls to it are refused. Its port stays bound
    (never listening) until the test ends, so no other process can take it meanwhile: a
    released port was once given to the service under test itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Spawned:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def spawn_service(tmp_path):
    """spawn_service(env) -> Spawned: app.py on a free loopback port; stopped after the test."""
    started: list[subprocess.Popen] = []

    def spawn(env: dict[str, str], *, wait: bool = True) -> Spawned:
        port = free_port()
        log_path = tmp_path / f"{SERVICE}-{port}.log"
        full_env = {"PATH": os.environ.get("PATH", ""), "PORT": str(port), **env}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(APP_PATH)], env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(proc)
        service = Spawned(proc, f"http://127.0.0.1:{port}", log_path)
        if wait:
            wait_healthy(service)
        return service

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
