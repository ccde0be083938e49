"""PromQL answers of the stack's real Prometheus, as Relay reads them: one value, or none, or a
clear refusal that names the query and what to write instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from relay.errors import TransientError
from relay.manifest import PrometheusMetrics
from relay.prometheus import (
    PrometheusUnavailable,
    placeholders,
    query_value,
    run_checks,
    shown,
    version_traffic,
)

pytestmark = pytest.mark.stack

PROMETHEUS = os.environ.get("RELAY_PROMETHEUS_URL", "http://127.0.0.1:9095")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as opened:
        yield opened


def ask(client: httpx.Client, query: str) -> float | None:
    return query_value(client, PROMETHEUS, query, datetime.now(UTC))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vector(2.5)", 2.5),  # one series
        ("scalar(vector(3))", 3.0),  # a scalar
        ('up{job="no-such-job"}', None),  # no series
        ("vector(0) / 0", None),  # NaN: no value, not a number to compare
    ],
)
def test_one_value_or_none(client: httpx.Client, query: str, expected: float | None) -> None:
    assert ask(client, query) == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('vector(1) or label_replace(vector(2), "a", "b", "", "")', "gives 2 series, not one"),
        ("vector(1)[1m:]", "gives a matrix, not one value"),
        ("sum(", "refused the query 'sum('"),
    ],
)
def test_a_query_that_gives_no_single_value_is_refused_saying_why(
    client: httpx.Client, query: str, says: str
) -> None:
    with pytest.raises(PrometheusUnavailable) as refused:
        ask(client, query)
    assert says in str(refused.value)
    assert not isinstance(refused.value, TransientError), "a bad query is not worth a retry"


def test_an_unreachable_prometheus_is_worth_a_retry_and_its_credentials_are_not_shown(
    client: httpx.Client,
) -> None:
    address = "http://relay:s3cret@127.0.0.1:9"
    with pytest.raises(TransientError) as unreachable:
        query_value(client, address, "vector(1)", datetime.now(UTC))
    assert "Prometheus at http://127.0.0.1:9 could not be reached" in str(unreachable.value)
    assert "s3cret" not in str(unreachable.value) and "s3cret" not in shown(address)


def test_checks_fill_in_both_versions_and_keep_why_one_has_no_value(client: httpx.Client) -> None:
    metrics = PrometheusMetrics.model_validate(
        {
            "checks": [
                {"name": "share", "query": "vector(0.3) + 0 * vector(1) # {{canary}}", "max": 0.2},
                {
                    "name": "named",
                    # a value only if {{canary}} and {{stable}} were filled in as given
                    "query": 'label_replace(vector(1), "v", "{{canary}}-{{stable}}", "", "") '
                    'and on(v) label_replace(vector(1), "v", "green-blue", "", "")',
                    "min": 1,
                },
                {"name": "broken", "query": "sum(", "max": 1},
            ]
        }
    )
    values = placeholders("shop", "web", "dev", {"canary": "green", "stable": "blue"}, 2.2)
    assert values["window"] == "3s"
    share, named, broken = run_checks(client, PROMETHEUS, metrics, values, datetime.now(UTC))
    assert share.failure() == "check 'share': 0.3 is above its max 0.2"
    assert named.value == 1.0 and named.failure() == ""
    assert broken.value is None and "refused the query 'sum('" in broken.problem


@pytest.mark.parametrize(
    ("queries", "says"),
    [
        ({"errors": 'sum(up{job="no-such-job"})'}, "analysis.prometheus.errors gives no value"),
        ({"errors": "vector(0)", "response_ms": "vector(1) / 0"}, "not a finite number"),
    ],
)
def test_a_version_with_requests_but_no_errors_or_time_value_is_not_judged(
    client: httpx.Client, queries: dict[str, str], says: str
) -> None:
    """A label typo must not count as 0 errors (or 0 ms): that would pass every canary."""
    metrics = PrometheusMetrics.model_validate({"requests": "vector(50)", **queries})
    values = placeholders("shop", "web", "dev", {"canary": "green", "stable": ""}, 5)
    with pytest.raises(PrometheusUnavailable) as refused:
        version_traffic(client, PROMETHEUS, metrics, values, datetime.now(UTC))
    assert says in str(refused.value)
