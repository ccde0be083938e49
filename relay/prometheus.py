"""Prometheus as a canary's metrics source: instant PromQL queries over its HTTP API.

`analysis.prometheus` names the queries (`relay.manifest.PrometheusMetrics`); each is asked at
the end of a canary window with its `{{placeholders}}` filled in, and must give one value (a
one-series vector or a scalar). Prometheus is the metrics source of the platform engineer who
already runs one, on any platform: the local stack's scrapes HAProxy's own exporter, so a
docker canary can be judged by PromQL exactly as by HAProxy's counters.

Nothing here decides: a source that cannot be asked raises `PrometheusUnavailable`, and a
query with no value is None; the caller turns both into an inconclusive step that says which
(never a silent pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from relay.analysis import CheckResult, ServerCounters
from relay.errors import RelayError, TransientError
from relay.manifest import PrometheusMetrics
from relay.manifest.fields import fill_placeholders

VERSIONS = ("canary", "stable")
QUERY_TIMEOUT_SECONDS = 5.0


class PrometheusUnavailable(RelayError):
    """Prometheus could not be asked, or refused a query: the window has no data to judge."""


class PrometheusUnreachable(PrometheusUnavailable, TransientError):
    """Prometheus did not answer at all: worth another try."""


def placeholders(
    app: str,
    service: str,
    environment: str,
    versions: Mapping[str, str],
    seconds: float,
) -> dict[str, str]:
    """The values of a window's placeholders; `versions` names the canary and the stable one
    ("" for a stable version there is not, so a query about it finds nothing)."""
    return {
        "app": app,
        "service": service,
        "environment": environment,
        "canary": versions.get("canary", ""),
        "stable": versions.get("stable", ""),
        "window": f"{max(1, math.ceil(seconds))}s",
    }


def shown(address: str) -> str:
    """`address` without credentials, for messages."""
    url = httpx.URL(address)
    return str(url.copy_with(username=None, password=None)) if url.userinfo else address


def query_value(client: httpx.Client, address: str, query: str, at: datetime) -> float | None:
    """The one value `query` gives at `at`; None when it gives none (no series, or NaN).

    Raises:
        PrometheusUnreachable: Prometheus did not answer.
        PrometheusUnavailable: it refused the query, or the query gives several series or a
            range (the text says what to write instead).
    """
    where = shown(address)
    try:
        answer = client.get(
            f"{address}/api/v1/query",
            params={"query": query, "time": f"{at.timestamp():.3f}"},
            timeout=QUERY_TIMEOUT_SECONDS,
        )
        body = answer.json()
    except httpx.HTTPError as exc:
        raise PrometheusUnreachable(f"Prometheus at {where} could not be reached ({exc})") from exc
    except ValueError:
        raise PrometheusUnavailable(
            f"Prometheus at {where} answered HTTP {answer.status_code}, not its API's JSON"
        ) from None
    if body.get("status") != "success":
        raise PrometheusUnavailable(
            f"Prometheus at {where} refused the query {query!r}: {body.get('error', body)}"
        )
    try:
        value = _one_value(body["data"], query)
    except (KeyError, IndexError, TypeError, ValueError):
        raise PrometheusUnavailable(
            f"Prometheus at {where} answered the query {query!r} in a shape Relay does not "
            "know (not an instant vector or a scalar)"
        ) from None
    if value is not None and math.isinf(value):
        raise PrometheusUnavailable(f"the query {query!r} gives {value}, not a finite number")
    return value


def _one_value(data: dict[str, Any], query: str) -> float | None:
    if data["resultType"] == "scalar":
        raw = data["result"][1]
    elif data["resultType"] == "vector":
        if not data["result"]:
            return None
        if len(data["result"]) > 1:
            raise PrometheusUnavailable(
                f"the query {query!r} gives {len(data['result'])} series, not one value; "
                "aggregate it, e.g. sum(...) or max(...)"
            )
        raw = data["result"][0]["value"][1]
    else:
        raise PrometheusUnavailable(
            f"the query {query!r} gives a {data['resultType']}, not one value; ask an instant "
            "vector, e.g. sum(increase(metric[{{window}}]))"
        )
    value = float(raw)
    return None if math.isnan(value) else value


def version_traffic(
    client: httpx.Client,
    address: str,
    metrics: PrometheusMetrics,
    values: Mapping[str, str],
    at: datetime,
) -> dict[str, ServerCounters | None]:
    """Each version's requests, errors and mean response time in the window ending at `at`;
    None for a version whose requests query has no value (or that there is not)."""
    found: dict[str, ServerCounters | None] = {}
    for version in VERSIONS:
        if not values[version]:
            found[version] = None
            continue
        filled = {**values, "version": values[version]}
        requests = query_value(client, address, fill_placeholders(metrics.requests, filled), at)
        if requests is None:
            found[version] = None
            continue
        # increase() extrapolates to the window's edges: counts come back as fractions.
        count = round(requests)
        errors = _required(client, address, "errors", metrics.errors, filled, at)
        mean_ms = (
            _required(client, address, "response_ms", metrics.response_ms, filled, at)
            if metrics.response_ms is not None and count
            else 0.0
        )
        found[version] = ServerCounters(
            requests=count,
            errors=min(round(errors), count),
            response_ms_total=mean_ms * count,
        )
    return found


def _required(
    client: httpx.Client,
    address: str,
    field: str,
    query: str,
    values: Mapping[str, str],
    at: datetime,
) -> float:
    """A query that must give a value once the version has requests: none would silently
    count as 0 errors or 0 ms (a typo in a label would pass every canary)."""
    filled = fill_placeholders(query, values)
    value = query_value(client, address, filled, at)
    if value is None:
        raise PrometheusUnavailable(
            f"analysis.prometheus.{field} gives no value for {values['version']} in this window "
            f"({filled!r}); check its labels, and end it in `or vector(0)` if its series may "
            "not exist yet"
        )
    return value


def run_checks(
    client: httpx.Client,
    address: str,
    metrics: PrometheusMetrics,
    values: Mapping[str, str],
    at: datetime,
) -> tuple[CheckResult, ...]:
    """Each of the environment's own checks' value at `at`; a check that could not be asked
    has no value, and its `problem` says why."""
    results = []
    for check in metrics.checks:
        try:
            value = query_value(client, address, fill_placeholders(check.query, values), at)
            problem = ""
        except PrometheusUnavailable as exc:
            value, problem = None, str(exc)
        results.append(CheckResult(check.name, value, check.max, check.min, problem))
    return tuple(results)
