"""gateway: the shop's public edge; forwards /api/... to the orders service.

Endpoints:
    GET  /healthz             -> 200 {"status": "ok"}   (never calls a dependency)
    GET  /version             -> 200 {"service": "gateway", "version": "<GIT_SHA or unknown>"}
    GET  /config              -> 200 {"keys": {"<NAME>": "<sha256 of its value>", ...}}: which
                                 configuration the deployment injected (RELAY_CONFIG_KEYS,
                                 from AWS Secrets Manager), as fingerprints, never values
    POST /api/orders          -> POST {ORDERS_URL}/orders, answer passed through (201, 4xx, 502)
    GET  /api/orders/<id>     -> GET  {ORDERS_URL}/orders/<id>, answer passed through
                                 | 502 when orders is unreachable

Every request gets a fresh X-Request-Id, sent on to orders (which sends it on to inventory and
payments) and returned to the client. The only dependency is ORDERS_URL (exit 2 when missing).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import sys
import threading
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

SERVICE = "gateway"
DEFAULT_PORT = 8001
HOST = "127.0.0.1"
DEPENDENCIES: tuple[str, ...] = ("orders",)
CALL_TIMEOUT_SECONDS = 2.0
MAX_BODY_BYTES = 64 * 1024
REQUEST_ID_HEADER = "X-Request-Id"


class HttpError(Exception):
    """An error answered to the client as JSON {"error": message} with this status."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class ConfigError(Exception):
    """Bad start-up configuration (environment variables)."""


class DependencyError(Exception):
    """A dependency could not be reached or gave an unusable answer."""


# --- configuration -----------------------------------------------------------------------------


def dependency_env_var(name: str) -> str:
    """`orders` -> `ORDERS_URL`, `user-profile` -> `USER_PROFILE_URL`."""
    return name.upper().replace("-", "_") + "_URL"


def resolve_dependencies(environ: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """Base URL of every dependency (no trailing slash), or ConfigError naming every problem."""
    urls: dict[str, str] = {}
    problems = []
    for name in names:
        var = dependency_env_var(name)
        value = environ.get(var, "").strip()
        if not value:
            problems.append(
                f"{var} is not set (base URL of the {name} service, e.g. http://127.0.0.1:8000)"
            )
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"{var} must be an http(s) URL, got {value!r}")
            continue
        urls[name] = value.rstrip("/")
    if problems:
        raise ConfigError("; ".join(problems))
    return urls


def resolve_port(environ: Mapping[str, str]) -> int:
    raw = environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT must be an integer between 1 and 65535, got {raw!r}")
    return int(raw)


def service_version(environ: Mapping[str, str]) -> str:
    return environ.get("GIT_SHA", "").strip() or "unknown"


def config_fingerprints(environ: Mapping[str, str]) -> dict[str, str]:
    """sha256 of each configuration value the deployment injected: enough to check which
    version of a secret a running process has, without showing it."""
    names = [name for name in environ.get("RELAY_CONFIG_KEYS", "").split(",") if name]
    return {name: hashlib.sha256(environ.get(name, "").encode()).hexdigest() for name in names}


# --- routing -----------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/healthz"), "healthz"),
    ("GET", re.compile(r"/version"), "version"),
    ("GET", re.compile(r"/config"), "config"),
    ("POST", re.compile(r"/api/orders"), "create_order"),
    ("GET", re.compile(r"/api/orders/(?P<order_id>[A-Za-z0-9_-]{1,64})"), "get_order"),
)


def route(method: str, target: str) -> tuple[str, dict[str, str]]:
    """Map a request line to (handler name, path parameters); 404/405 as HttpError."""
    path = urlsplit(target).path
    allowed = []
    for route_method, pattern, name in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if route_method == method:
                return name, match.groupdict()
            allowed.append(route_method)
    if allowed:
        raise HttpError(405, f"{method} is not allowed on {path}", {"Allow": ", ".join(allowed)})
    raise HttpError(404, f"no such endpoint: {method} {path}")


def parse_json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HttpError(400, "request body must be valid JSON") from None
    if not isinstance(value, dict):
        raise HttpError(400, "request body must be a JSON object")
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


def upstream_url(base: str, handler: str, params: Mapping[str, str]) -> str:
    """Where a gateway route goes on the orders service."""
    if handler == "create_order":
        return f"{base}/orders"
    if handler == "get_order":
        return f"{base}/orders/{quote(params['order_id'], safe='')}"
    raise ValueError(f"no upstream for {handler}")


# --- dependency calls --------------------------------------------------------------------------

# Service-to-service calls never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _decode_json(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def call_json(
    method: str,
    url: str,
    payload: Mapping | None = None,
    request_id: str | None = None,
    timeout: float = CALL_TIMEOUT_SECONDS,
) -> tuple[int, dict]:
    """One JSON request to a dependency: (status, JSON object), or DependencyError."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        # Dependency URLs were checked to be http(s) at start-up (no file:// and the like).
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DependencyError(f"{method} {url}: {reason}") from None
    body = _decode_json(raw)
    if body is None:
        if 200 <= status < 300:
            raise DependencyError(f"{method} {url}: answered {status} without a JSON object")
        body = {"error": f"HTTP {status}"}
    return status, body


# --- HTTP --------------------------------------------------------------------------------------


class App:
    """Request handlers: each takes (params, raw body, request id) and returns (status, payload)."""

    def __init__(self, environ: Mapping[str, str], urls: Mapping[str, str]):
        self.service_version = service_version(environ)
        self.urls = dict(urls)
        self.config_keys = config_fingerprints(environ)

    def healthz(self, params, raw, request_id):
        return 200, {"status": "ok"}

    def version(self, params, raw, request_id):
        return 200, {"service": SERVICE, "version": self.service_version}

    def config(self, params, raw, request_id):
        return 200, {"keys": self.config_keys}

    def create_order(self, params, raw, request_id):
        body = parse_json_object(raw)
        return self._forward(
            "POST", upstream_url(self.urls["orders"], "create_order", params), body, request_id
        )

    def get_order(self, params, raw, request_id):
        return self._forward(
            "GET", upstream_url(self.urls["orders"], "get_order", params), None, request_id
        )

    def _forward(self, method, url, body, request_id):
        try:
            return call_json(method, url, body, request_id)
        except DependencyError as exc:
            raise HttpError(502, f"orders unreachable: {exc}") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = f"shop-{SERVICE}"

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        raw_length = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw_length.isdigit():
            self.close_connection = True
            raise HttpError(400, "invalid Content-Length")
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        # The edge always starts a new trace: the id is generated here, never taken from clients.
        request_id = new_request_id()
        self._request_id = request_id
        extra_headers: dict[str, str] = {}
        try:
            raw = self._read_body()
            name, params = route(self.command, self.path)
            status, payload = getattr(self.server.app, name)(params, raw, request_id)
        except HttpError as exc:
            status, payload, extra_headers = exc.status, {"error": exc.message}, exc.headers
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, {"error": "internal error"}
        self._send_json(status, payload, request_id, extra_headers)

    def _send_json(self, status, payload, request_id, extra_headers):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if request_id:
            self.send_header(REQUEST_ID_HEADER, request_id)
        for key, value in extra_headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        request_id = getattr(self, "_request_id", None) or "-"
        sys.stderr.write(f"{SERVICE} {self.address_string()} rid={request_id} {format % args}\n")


def make_server(port: int, app: App) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    server.app = app
    return server


def install_signal_handlers(server: ThreadingHTTPServer) -> None:
    """SIGTERM/SIGINT stop serve_forever; shutdown() blocks, so it runs in its own thread."""

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main() -> int:
    try:
        port = resolve_port(os.environ)
        urls = resolve_dependencies(os.environ, DEPENDENCIES)
    except ConfigError as exc:
        print(f"{SERVICE}: configuration error: {exc}", file=sys.stderr)
        return 2
    server = make_server(port, App(os.environ, urls))
    install_signal_handlers(server)
    print(f"{SERVICE}: listening on http://{HOST}:{port}", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print(f"{SERVICE}: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
