"""A stand-in for PyPI's JSON API on 127.0.0.1, serving advisories, for the package gate's tests.

pip-audit reads `https://pypi.org/pypi/<name>/<version>/json`, whose `vulnerabilities` are
the Python Packaging Advisory Database's records. The package index these machines reach
serves project pages and files but no per-version JSON (every such request is a 404), so the
tests point `security.packages.advisories` at this server instead. It answers every
`<name>/<version>` with no advisories, except the releases in its `published` mapping (by
default `ADVISORIES`: records copied from PyPI's answer for them; a test changes the mapping to
publish an advisory after a build) and the names in `UNKNOWN` (404, like a private package).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# PyPI's `vulnerabilities` for jinja2 2.10 (a subset of them).
JINJA2_2_10: list[dict[str, Any]] = [
    {
        "id": "PYSEC-2019-217",
        "aliases": ["CVE-2019-10906", "GHSA-462w-v97r-4m45"],
        "details": "In Pallets Jinja before 2.10.1, str.format_map allows a sandbox escape.",
        "fixed_in": ["2.10.1"],
        "link": "https://osv.dev/vulnerability/PYSEC-2019-217",
        "source": "osv",
        "summary": None,
        "withdrawn": None,
    },
    {
        "id": "PYSEC-2021-66",
        "aliases": ["CVE-2020-28493", "GHSA-g3rq-g295-4j3m"],
        "details": "This affects the package jinja2 from 0.0.0 and before 2.11.3. The ReDoS "
        "vulnerability is mainly due to the `_punctuation_re regex` operator and its use of "
        "multiple wildcards.",
        "fixed_in": ["2.11.3"],
        "link": "https://osv.dev/vulnerability/PYSEC-2021-66",
        "source": "osv",
        "summary": None,
        "withdrawn": None,
    },
    {
        "id": "GHSA-h5c8-rqwp-cp95",
        "aliases": ["CVE-2024-22195"],
        "details": "The `xmlattr` filter in affected versions of Jinja accepts keys containing "
        "spaces.",
        "fixed_in": ["3.1.3"],
        "link": "https://osv.dev/vulnerability/GHSA-h5c8-rqwp-cp95",
        "source": "osv",
        "summary": "Jinja vulnerable to HTML attribute injection when passing user input as "
        "keys to xmlattr filter",
        "withdrawn": None,
    },
]
ADVISORIES = {("jinja2", "2.10"): JINJA2_2_10}
UNKNOWN = {"relay-private-lib"}
# The ids pip-audit reports: its preferred one of each record's names (PYSEC, then CVE, then GHSA).
JINJA2_IDS = ["PYSEC-2019-217", "PYSEC-2021-66", "CVE-2024-22195"]

_PATH = re.compile(r"^/pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json$")


class _Server(ThreadingHTTPServer):
    published: dict[tuple[str, str], list[dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        match = _PATH.match(self.path)
        if not match or match["name"] in UNKNOWN:
            self.send_error(404)
            return
        name, version = match["name"], match["version"]
        body = json.dumps(
            {
                "info": {"name": name, "version": version},
                "vulnerabilities": self.server.published.get((name, version), []),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextmanager
def advisory_index(
    published: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
) -> Iterator[str]:
    """The stand-in's base URL (`http://127.0.0.1:<port>/pypi`) while it runs; it serves
    `published` (default: `ADVISORIES`) as it is at each request."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.published = ADVISORIES if published is None else published
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()
