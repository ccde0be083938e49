"""inventory: stock levels and reservations for the shop example (standard library only).

Endpoints:
    GET  /healthz        -> 200 {"status": "ok"}
    GET  /version        -> 200 {"service": "inventory", "version": "<GIT_SHA or unknown>"}
    GET  /stock/<sku>    -> 200 {"sku", "available"} | 404 unknown sku
    POST /reserve        {"sku", "quantity"} -> 200 {"reserved": true, "reservation_id", ...}
                         | 400 bad body | 404 unknown sku | 409 insufficient stock
    POST /release        {"reservation_id"} -> 200 {"released": true, ...} | 404 unknown/released

Stock lives in memory: every process starts from INITIAL_STOCK.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = "inventory"
DEFAULT_PORT = 8003
HOST = "127.0.0.1"
DEPENDENCIES: tuple[str, ...] = ()  # calls no other service
MAX_BODY_BYTES = 64 * 1024
MAX_QUANTITY = 100
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Generous for widgets so that repeated test runs against one long-lived environment do not run
# it dry; gizmo is always out of stock (the 409 path), gadget is scarce.
INITIAL_STOCK: dict[str, int] = {"widget": 1000, "gadget": 3, "gizmo": 0}


class HttpError(Exception):
    """An error answered to the client as JSON {"error": message} with this status."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class ConfigError(Exception):
    """Bad start-up configuration (environment variables)."""


# --- configuration -----------------------------------------------------------------------------


def resolve_port(environ: Mapping[str, str]) -> int:
    raw = environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT must be an integer between 1 and 65535, got {raw!r}")
    return int(raw)


def service_version(environ: Mapping[str, str]) -> str:
    return environ.get("GIT_SHA", "").strip() or "unknown"


# --- routing -----------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/healthz"), "healthz"),
    ("GET", re.compile(r"/version"), "version"),
    ("GET", re.compile(r"/stock/(?P<sku>[A-Za-z0-9_-]{1,64})"), "get_stock"),
    ("POST", re.compile(r"/reserve"), "reserve"),
    ("POST", re.compile(r"/release"), "release"),
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


def sanitize_request_id(value: str | None) -> str | None:
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return None


# --- domain (pure) -----------------------------------------------------------------------------


def validate_reservation(body: Mapping) -> tuple[str, int]:
    """Return (sku, quantity) from a /reserve body or raise HttpError(400)."""
    sku = body.get("sku")
    quantity = body.get("quantity")
    if not isinstance(sku, str) or not sku:
        raise HttpError(400, "sku must be a non-empty string")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise HttpError(400, "quantity must be a positive integer")
    if quantity > MAX_QUANTITY:
        raise HttpError(400, f"quantity must be at most {MAX_QUANTITY}")
    return sku, quantity


def plan_reservation(stock: Mapping[str, int], sku: str, quantity: int) -> int:
    """Return the stock left after reserving `quantity` of `sku`, or raise 404/409."""
    if sku not in stock:
        raise HttpError(404, f"unknown sku: {sku}")
    available = stock[sku]
    if quantity > available:
        raise HttpError(
            409, f"insufficient stock for {sku}: {available} available, {quantity} asked"
        )
    return available - quantity


class Stock:
    """Thread-safe in-memory stock table with reservations that can be released once."""

    def __init__(self, initial: Mapping[str, int]):
        self._lock = threading.Lock()
        self._available = dict(initial)
        self._reservations: dict[str, tuple[str, int]] = {}

    def available(self, sku: str) -> int:
        with self._lock:
            if sku not in self._available:
                raise HttpError(404, f"unknown sku: {sku}")
            return self._available[sku]

    def reserve(self, sku: str, quantity: int) -> dict:
        with self._lock:
            remaining = plan_reservation(self._available, sku, quantity)
            self._available[sku] = remaining
            reservation_id = uuid.uuid4().hex
            self._reservations[reservation_id] = (sku, quantity)
        return {
            "reserved": True,
            "reservation_id": reservation_id,
            "sku": sku,
            "quantity": quantity,
            "available": remaining,
        }

    def release(self, reservation_id: str) -> dict:
        with self._lock:
            reservation = self._reservations.pop(reservation_id, None)
            if reservation is None:
                raise HttpError(404, f"unknown or already released reservation: {reservation_id}")
            sku, quantity = reservation
            self._available[sku] += quantity
            available = self._available[sku]
        return {
            "released": True,
            "reservation_id": reservation_id,
            "sku": sku,
            "quantity": quantity,
            "available": available,
        }


# --- HTTP --------------------------------------------------------------------------------------


class App:
    """Request handlers: each takes (params, raw body, request id) and returns (status, payload)."""

    def __init__(self, environ: Mapping[str, str], stock: Stock | None = None):
        self.service_version = service_version(environ)
        self.stock = stock or Stock(INITIAL_STOCK)

    def healthz(self, params, raw, request_id):
        return 200, {"status": "ok"}

    def version(self, params, raw, request_id):
        return 200, {"service": SERVICE, "version": self.service_version}

    def get_stock(self, params, raw, request_id):
        sku = params["sku"]
        return 200, {"sku": sku, "available": self.stock.available(sku)}

    def reserve(self, params, raw, request_id):
        sku, quantity = validate_reservation(parse_json_object(raw))
        return 200, self.stock.reserve(sku, quantity)

    def release(self, params, raw, request_id):
        reservation_id = parse_json_object(raw).get("reservation_id")
        if not isinstance(reservation_id, str) or not reservation_id:
            raise HttpError(400, "reservation_id must be a non-empty string")
        return 200, self.stock.release(reservation_id)


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
        request_id = sanitize_request_id(self.headers.get(REQUEST_ID_HEADER))
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
    except ConfigError as exc:
        print(f"{SERVICE}: configuration error: {exc}", file=sys.stderr)
        return 2
    server = make_server(port, App(os.environ))
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
