"""End-to-end helpers: `service_url("gateway")` reads GATEWAY_URL or skips; `http(...)` makes one
JSON request and never raises for 4xx/5xx."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

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
