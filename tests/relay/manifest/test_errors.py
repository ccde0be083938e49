"""relay/manifest/errors.py: pydantic's errors in the manifest's words."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.relay.manifest.documents import VALID, problems, with_environments


def test_unknown_key_suggests_the_closest_field(tmp_path: Path) -> None:
    text = VALID.replace("    depends_on: [orders]", "    dependson: [orders]")

    assert problems(tmp_path, text) == [
        "services.gateway.dependson: unknown key; did you mean 'depends_on'?"
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8001\n", "    port: 8001\n    sast: {colour: red}\n")

    assert problems(tmp_path, text) == [
        "services.inventory.sast.colour: unknown key; remove it or use one of: command, fail_on, "
        "sarif"
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, VALID + "enviroments: {}\n") == [
        "enviroments: unknown key; did you mean 'environments'?"
    ]


def test_wrong_type(tmp_path: Path) -> None:
    text = VALID.replace("port: 8002", "port: abc")

    assert problems(tmp_path, text) == [
        "services.orders.port: Input should be a valid integer (got 'abc'); "
        "write a whole number such as 8080"
    ]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        pytest.param(
            "port: 8002",
            "port: 80",
            "services.orders.port: Input should be greater than or equal to 1024 (got 80); "
            "write a whole number from 1024 to 65535",
            id="range",
        ),
        pytest.param(
            "port: 8002",
            "port: '8002'",
            "services.orders.port: Input should be a valid integer (got '8002'); "
            "write a whole number such as 8080",
            id="quoted-number",
        ),
        pytest.param(
            "    port: 8001\n",
            "    port: 8001\n    sast: {fail_on: critical}\n",
            "services.inventory.sast.fail_on: Input should be 'low', 'medium', 'high' or 'never' "
            "(got 'critical'); write one of: low, medium, high, never",
            id="literal",
        ),
        pytest.param(
            "[orders]",
            "orders",
            "services.gateway.depends_on: Input should be a valid list (got 'orders'); "
            "write a list, such as [inventory, payments]",
            id="list",
        ),
        pytest.param(
            "    port: 8001\n",
            "    port: 8001\n    health: healthz\n",
            "services.inventory.health: 'healthz' does not start with '/'; "
            "write a URL path such as '/healthz'",
            id="health",
        ),
        pytest.param(
            "    port: 8001\n",
            "    port: 8001\n    build: ''\n",
            "services.inventory.build: is empty; write a command such as 'make test', "
            "or a list such as [make, test]",
            id="empty-command",
        ),
        pytest.param(
            "  gateway:\n",
            "  Gateway:\n",
            "services.Gateway: 'Gateway' is not a valid service name; use 1-40 lowercase "
            "letters, digits or '-', first a letter, such as 'orders'",
            id="service-name",
        ),
        pytest.param(
            "    path: services/payments\n",
            "",
            "services.payments.path: required key is missing; add path: services/payments (its "
            "directory, from relay.yaml's; . for the same one)",
            id="missing",
        ),
    ],
)
def test_pydantic_errors_in_the_manifest_words(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    assert replace in VALID
    assert problems(tmp_path, VALID.replace(replace, by, 1)) == [expected]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param(
            "analysis: {max_error_rate: 2}",
            "environments.prod.analysis.max_error_rate: Input should be less than or equal to 1 "
            "(got 2); write a number from 0 to 1, such as 0.05 (5%)",
            id="error-rate-above-1",
        ),
        pytest.param(
            "analysis: {max_error_rate: 5%}",
            "environments.prod.analysis.max_error_rate: Input should be a valid number "
            "(got '5%'); write a number such as 0.05 (5%)",
            id="error-rate-as-text",
        ),
        pytest.param(
            "analysis: {interval_seconds: 0.5}",
            "environments.prod.analysis.interval_seconds: Input should be greater than or equal "
            "to 1 (got 0.5); write a number from 1 to 3600, such as 10",
            id="interval-too-short",
        ),
        pytest.param(
            "analysis: {min_requests: 0}",
            "environments.prod.analysis.min_requests: Input should be greater than or equal "
            "to 1 (got 0); write a whole number of at least 1",
            id="min-requests",
        ),
        pytest.param(
            "analysis: {max_response_ms: 1.5}",
            "environments.prod.analysis.max_response_ms: Input should be a valid integer "
            "(got 1.5); write a whole number such as 1000",
            id="response-ms-not-whole",
        ),
        pytest.param(
            "analysis: {on_inconclusive: wait}",
            "environments.prod.analysis.on_inconclusive: Input should be 'fail', 'pause' or "
            "'continue' (got 'wait'); write one of: fail, pause, continue",
            id="on-inconclusive",
        ),
        pytest.param(
            "analysis: {max_errors: 1}",
            "environments.prod.analysis.max_errors: unknown key; did you mean 'max_error_rate'?",
            id="unknown-key",
        ),
        pytest.param(
            "keep_previous_seconds: -1",
            "environments.prod.keep_previous_seconds: Input should be greater than or equal to "
            "0 (got -1); write a number from 0 to 86400, such as 30",
            id="keep-previous",
        ),
        pytest.param(
            "smoke_tests: ''",
            "environments.prod.smoke_tests: is empty; write a command such as 'make test', "
            "or a list such as [make, test]",
            id="empty-smoke-tests",
        ),
    ],
)
def test_deployment_setting_errors(tmp_path: Path, setting: str, expected: str) -> None:
    text = with_environments(
        f"""\
        environments:
          prod: {{port_offset: 14000, strategy: canary, {setting}}}
        """
    )

    assert problems(tmp_path, text) == [expected]


def test_approval_errors(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          prod:
            port_offset: 14000
            approval: {required: maybe, timeout_seconds: 2}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.prod.approval.required: Input should be a valid boolean (got 'maybe'); "
        "write true or false",
        "environments.prod.approval.timeout_seconds: Input should be greater than or equal to "
        "5 (got 2); write a whole number from 5 to 604800",
    ]


def test_security_mistakes_are_all_reported_with_the_fix(tmp_path: Path) -> None:
    text = VALID.replace(
        "    port: 8001\n", "    port: 8001\n    sast: {sarif: /tmp/x.sarif}\n"
    ) + textwrap.dedent(
        """\
        security:
          packages: {fail_on: high, advisories: ftp://mirror, allow: [{id: PYSEC-1}]}
          compliance: {skip: [{id: CKV_DOCKER_2}]}
        """
    )

    assert problems(tmp_path, text) == [
        "services.inventory.sast.sarif: '/tmp/x.sarif' is absolute; write a path relative to "
        "the service's path, such as 'sast.sarif'",
        "security.packages.fail_on: Input should be 'any' or 'never' (got 'high'); "
        "write one of: any, never",
        "security.packages.advisories: 'ftp://mirror' is not an http(s) URL; write one such as "
        "'https://example.com:9090/path'",
        "security.packages.allow[0].reason: required key is missing; add reason: not reachable "
        "from our code",
        "security.packages.allow[0].until: required key is missing; add until: 2027-01-31",
        "security.compliance.skip[0].reason: required key is missing; add reason: not reachable "
        "from our code",
    ]


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        pytest.param(
            "{prometheus: {address: 'http://127.0.0.1:9095'}}",
            "environments.prod.analysis: prometheus: is set but metrics is haproxy; write "
            "metrics: prometheus, or remove prometheus:",
            id="prometheus-without-metrics",
        ),
        pytest.param(
            "{metrics: prometheus, prometheus: {requests: 'sum(x{s=\"{{svc}}\"})'}}",
            "environments.prod.analysis.prometheus.requests: {{svc}} is not a placeholder Relay "
            "fills in; use {{app}}, {{service}}, {{environment}}, {{canary}}, {{stable}}, "
            "{{version}}, {{window}}",
            id="unknown-placeholder",
        ),
        pytest.param(
            "{metrics: prometheus, prometheus: {checks: [{name: p99, query: 'x'}]}}",
            "environments.prod.analysis.prometheus.checks[0]: a check needs a limit: write max: "
            "(fails above) or min: (fails below)",
            id="check-without-limit",
        ),
        pytest.param(
            "{metrics: prometheus, prometheus: {address: 'prometheus:9090'}}",
            "environments.prod.analysis.prometheus.address: 'prometheus:9090' is not an http(s) "
            "URL; write one such as 'https://example.com:9090/path'",
            id="address-not-a-url",
        ),
    ],
)
def test_prometheus_analysis_errors(tmp_path: Path, analysis: str, expected: str) -> None:
    text = with_environments(
        f"""\
        environments:
          prod: {{port_offset: 14000, strategy: canary, analysis: {analysis}}}
        """
    )

    assert problems(tmp_path, text) == [expected]


def test_prometheus_defaults_are_refused_on_kubernetes(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          prod:
            platform: kubernetes
            namespace: shop-prod
            strategy: canary
            analysis: {metrics: prometheus, prometheus: {requests: 'sum(up)'}}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.prod: analysis.prometheus: the default requests and errors queries read "
        "Relay's HAProxy routers, which a kubernetes environment has not; write "
        "analysis.prometheus.requests and errors for your metrics (with {{version}} for the "
        "track)"
    ]


def test_a_cloudwatch_dimension_placeholder_typo_is_refused(tmp_path: Path) -> None:
    metrics = (
        "{namespace: AWS/ApplicationELB, dimensions: {TargetGroup: '{{servce}}-{{version}}'}, "
        "requests: RequestCount, errors: HTTPCode_Target_5XX_Count}"
    )
    text = with_environments(
        f"""\
        environments:
          prod:
            port_offset: 14000
            strategy: canary
            analysis: {{metrics: cloudwatch, cloudwatch_metrics: {metrics}}}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.prod.analysis.cloudwatch_metrics.dimensions.TargetGroup: {{servce}} is not "
        "a placeholder Relay fills in; use {{service}}, {{environment}}, {{version}}"
    ]
