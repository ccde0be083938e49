"""payments: a fake card processor for the shop example (standard library only).

Endpoints:
    GET  /healthz   -> 200 {"status": "ok"}
    GET  /version   -> 200 {"service": "payments", "version": "<GIT_SHA or unknown>"}
    POST /charge    {"amount_cents": int, "card": "4242..."}
                    -> 200 {"charged": true, "payment_id", "amount_cents", "card_last4"}
                    | 400 bad amount or card | 402 declined (card ending in 0002)

No money moves and card numbers are never stored or logged; only the last four digits are echoed.
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

SERVICE = "payments"
DEFAULT_PORT = 8004
HOST = "127.0.0.1"
DEPENDENCIES: tuple[str, ...] = ()  # calls no other service
MAX_BODY_BYTES = 64 * 1024
MAX_AMOUNT_CENTS = 10_000_000
DECLINED_SUFFIX = "0002"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CARD_RE = re.compile(r"[0-9]{12,19}")


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
    ("POST", re.compile(r"/charge"), "charge"),
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


def validate_amount(amount) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise HttpError(400, "amount_cents must be a positive integer")
    if amount > MAX_AMOUNT_CENTS:
        raise HttpError(400, f"amount_cents must be at most {MAX_AMOUNT_CENTS}")
    return amount


def normalize_card(card) -> str:
    """Digits only ("4242 4242-4242 4242" -> "4242424242424242"); 12 to 19 digits."""
    if not isinstance(card, str):
        raise HttpError(400, "card must be a string of 12 to 19 digits")
    digits = card.replace(" ", "").replace("-", "")
    if not _CARD_RE.fullmatch(digits):
        raise HttpError(400, "card must be a string of 12 to 19 digits")
    return digits


def is_declined(card_digits: str) -> bool:
    """The test-card rule: a card ending in 0002 is always declined."""
    return card_digits.endswith(DECLINED_SUFFIX)


def decide_charge(body: Mapping, payment_id: str) -> tuple[int, dict]:
    """Validate a /charge body and decide it: (200, charged) or (402, declined); 400 raises."""
    amount = validate_amount(body.get("amount_cents"))
    card = normalize_card(body.get("card"))
    if is_declined(card):
        return 402, {"error": "card declined", "charged": False, "card_last4": card[-4:]}
    return 200, {
        "charged": True,
        "payment_id": payment_id,
        "amount_cents": amount,
        "card_last4": card[-4:],
    }


def new_payment_id() -> str:
    return "pay_" + uuid.uuid4().hex


# --- HTTP --------------------------------------------------------------------------------------


class App:
    """Request handlers: each takes (params, raw body, request id) and returns (status, payload)."""

    def __init__(self, environ: Mapping[str, str]):
        self.service_version = service_version(environ)

    def healthz(self, params, raw, request_id):
        return 200, {"status": "ok"}

    def version(self, params, raw, request_id):
        return 200, {"service": SERVICE, "version": self.service_version}

    def charge(self, params, raw, request_id):
        return decide_charge(parse_json_object(raw), new_payment_id())


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
