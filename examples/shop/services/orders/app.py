"""orders: places orders by reserving stock (inventory) and charging a card (payments).

Endpoints:
    GET  /healthz        -> 200 {"status": "ok"}   (never calls a dependency)
    GET  /version        -> 200 {"service": "orders", "version": "<GIT_SHA or unknown>"}
    POST /orders         {"sku", "quantity", "card"}
                         -> 201 {"order_id", "sku", "quantity", "amount_cents", "payment_id", ...}
                         | 400 bad body | 404 unknown sku | 409 out of stock | 402 card declined
                         | 502 a dependency is unreachable or misbehaving
    GET  /orders/<id>    -> 200 the order | 404

Dependencies come from INVENTORY_URL and PAYMENTS_URL (exit 2 at start-up when missing).
A placed order calls POST {INVENTORY_URL}/reserve, then POST {PAYMENTS_URL}/charge; when the
charge fails the reservation is released again (POST {INVENTORY_URL}/release).
Orders live in memory, per process.
"""

from __future__ import annotations

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
from collections import OrderedDict
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = "orders"
DEFAULT_PORT = 8002
HOST = "127.0.0.1"
DEPENDENCIES: tuple[str, ...] = ("inventory", "payments")
CALL_TIMEOUT_SECONDS = 2.0
MAX_BODY_BYTES = 64 * 1024
MAX_QUANTITY = 100
MAX_STORED_ORDERS = 10_000
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

PRICES_CENTS: dict[str, int] = {"widget": 1999, "gadget": 4999, "gizmo": 999}

# Dependency answers passed on to our caller unchanged; any other failure becomes 502.
PROPAGATED_STATUSES: dict[str, frozenset[int]] = {
    "inventory": frozenset({404, 409}),
    "payments": frozenset({400, 402}),
}


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
    """`inventory` -> `INVENTORY_URL`, `user-profile` -> `USER_PROFILE_URL`."""
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


# --- routing -----------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/healthz"), "healthz"),
    ("GET", re.compile(r"/version"), "version"),
    ("POST", re.compile(r"/orders"), "create_order"),
    ("GET", re.compile(r"/orders/(?P<order_id>[A-Za-z0-9_-]{1,64})"), "get_order"),
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


def validate_order(body: Mapping) -> tuple[str, int, str]:
    """Return (sku, quantity, card) from a POST /orders body or raise HttpError(400)."""
    sku = body.get("sku")
    quantity = body.get("quantity")
    card = body.get("card")
    if not isinstance(sku, str) or not sku:
        raise HttpError(400, "sku must be a non-empty string")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise HttpError(400, "quantity must be a positive integer")
    if quantity > MAX_QUANTITY:
        raise HttpError(400, f"quantity must be at most {MAX_QUANTITY}")
    if not isinstance(card, str) or not card.strip() or len(card) > 32:
        raise HttpError(400, "card must be a non-empty string")
    return sku, quantity, card


def price_cents(sku: str, quantity: int, prices: Mapping[str, int] = PRICES_CENTS) -> int:
    """Total price in cents; unknown sku is a 404."""
    if sku not in prices:
        raise HttpError(404, f"unknown sku: {sku}")
    return prices[sku] * quantity


def dependency_failure(dependency: str, status: int, payload: Mapping) -> HttpError:
    """Turn a dependency's non-2xx answer into ours: known client errors pass, the rest is 502."""
    detail = payload.get("error") if isinstance(payload.get("error"), str) else f"HTTP {status}"
    if status in PROPAGATED_STATUSES.get(dependency, frozenset()):
        return HttpError(status, detail)
    return HttpError(502, f"{dependency} failed: {detail}")


def new_order_id() -> str:
    return "ord_" + uuid.uuid4().hex


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
        self._orders: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def healthz(self, params, raw, request_id):
        return 200, {"status": "ok"}

    def version(self, params, raw, request_id):
        return 200, {"service": SERVICE, "version": self.service_version}

    def get_order(self, params, raw, request_id):
        with self._lock:
            order = self._orders.get(params["order_id"])
        if order is None:
            raise HttpError(404, f"unknown order: {params['order_id']}")
        return 200, order

    def create_order(self, params, raw, request_id):
        sku, quantity, card = validate_order(parse_json_object(raw))
        amount = price_cents(sku, quantity)

        status, reservation = self._call(
            "inventory", "/reserve", {"sku": sku, "quantity": quantity}, request_id
        )
        if status != 200:
            raise dependency_failure("inventory", status, reservation)
        try:
            status, charge = self._call(
                "payments", "/charge", {"amount_cents": amount, "card": card}, request_id
            )
            if status != 200:
                raise dependency_failure("payments", status, charge)
        except HttpError:
            self._release(reservation.get("reservation_id"), request_id)
            raise

        order = {
            "order_id": new_order_id(),
            "status": "confirmed",
            "sku": sku,
            "quantity": quantity,
            "amount_cents": amount,
            "payment_id": charge.get("payment_id"),
        }
        with self._lock:
            self._orders[order["order_id"]] = order
            while len(self._orders) > MAX_STORED_ORDERS:
                self._orders.popitem(last=False)
        return 201, order

    def _call(self, dependency, path, payload, request_id):
        try:
            return call_json("POST", self.urls[dependency] + path, payload, request_id)
        except DependencyError as exc:
            raise HttpError(502, f"{dependency} unreachable: {exc}") from None

    def _release(self, reservation_id, request_id):
        """Best effort: give the stock back after a failed charge."""
        if not reservation_id:
            return
        try:
            status, _ = call_json(
                "POST",
                self.urls["inventory"] + "/release",
                {"reservation_id": reservation_id},
                request_id,
            )
        except DependencyError as exc:
            status = str(exc)
        if status != 200:
            sys.stderr.write(
                f"{SERVICE}: could not release reservation {reservation_id}: {status}\n"
            )


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
