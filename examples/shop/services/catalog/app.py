"""catalog: the shop's products with their prices written out for people (uses Babel).

The one service of the example with a third-party dependency (requirements.txt): its unit
tests import it, so they pass only where it is installed, in the service's stage image.

Endpoints:
    GET /healthz          -> 200 {"status": "ok"}
    GET /version          -> 200 {"service": "catalog", "version": "<GIT_SHA or unknown>"}
    GET /products         -> 200 [{"sku", "name", "price_cents", "price"}]
    GET /products/<sku>   -> 200 {"sku", "name", "price_cents", "price"} | 404 unknown sku

`price` is formatted for LOCALE (default en_US) and CURRENCY (default USD), e.g. "$12.50".
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from babel.numbers import format_currency

SERVICE = "catalog"
DEFAULT_PORT = 8005
HOST = "127.0.0.1"
PRODUCTS: dict[str, tuple[str, int]] = {
    "widget": ("Widget", 1250),
    "gadget": ("Gadget", 4999),
    "gizmo": ("Gizmo", 120000),
}
_PRODUCT = re.compile(r"/products/(?P<sku>[A-Za-z0-9_-]{1,64})")


def price_text(cents: int, locale: str = "en_US", currency: str = "USD") -> str:
    """A price as people read it where they are: `$1,200.00`, `1.200,00 €`."""
    return str(format_currency(cents / 100, currency, locale=locale))


def product(sku: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    if sku not in PRODUCTS:
        return None
    name, cents = PRODUCTS[sku]
    locale = environ.get("LOCALE", "en_US")
    currency = environ.get("CURRENCY", "USD")
    return {
        "sku": sku,
        "name": name,
        "price_cents": cents,
        "price": price_text(cents, locale, currency),
    }


def answer(path: str, environ: Mapping[str, str]) -> tuple[int, object]:
    """The status and JSON body for a GET of `path`."""
    if path == "/healthz":
        return 200, {"status": "ok"}
    if path == "/version":
        return 200, {"service": SERVICE, "version": environ.get("GIT_SHA", "").strip() or "unknown"}
    if path == "/products":
        return 200, [product(sku, environ) for sku in PRODUCTS]
    if (match := _PRODUCT.fullmatch(path)) is not None:
        found = product(match["sku"], environ)
        return (
            (200, found) if found is not None else (404, {"error": f"unknown sku {match['sku']}"})
        )
    return 404, {"error": f"no route for GET {path}"}


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body in one segment: no 40 ms delayed ACK

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, body = answer(self.path.split("?", 1)[0], os.environ)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"{SERVICE}: {format % args}\n")


def main() -> None:
    port = int(os.environ.get("PORT", DEFAULT_PORT))
    server = ThreadingHTTPServer((os.environ.get("HOST", HOST), port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"{SERVICE} listening on {HOST}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
