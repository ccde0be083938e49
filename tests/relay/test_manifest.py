from __future__ import annotations

import pickle
import re
import textwrap
from pathlib import Path

import pytest
import yaml

import relay.manifest
from relay.errors import ManifestError, RelayError, TerminalError
from relay.manifest import (
    Analysis,
    Approval,
    Environment,
    Manifest,
    Service,
    ServicePorts,
    load_manifest,
    parse_manifest,
)

SERVICES = """\
services:
  gateway:
    path: services/gateway
    port: 8000
    depends_on: [orders]
  orders:
    path: services/orders
    port: 8002
    depends_on: [inventory, payments]
  inventory:
    path: services/inventory
    port: 8001
  payments:
    path: services/payments
    port: 8003
"""
VALID = "app: shop\n" + SERVICES


def write(tmp_path: Path, text: str, *, scaffold: bool = True) -> Path:
    """Write `relay.yaml` and, unless told not to, every service directory with a Dockerfile."""
    path = tmp_path / "relay.yaml"
    path.write_text(textwrap.dedent(text))
    if scaffold:
        for name in ("gateway", "orders", "inventory", "payments"):
            (tmp_path / "services" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "services" / name / "Dockerfile").write_text("FROM scratch\n")
    return path


def problems(tmp_path: Path, text: str, *, scaffold: bool = True) -> list[str]:
    """The problems `load_manifest` reports, without the leading `<file>: `."""
    path = write(tmp_path, text, scaffold=scaffold)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.path == path
    prefix = f"{path}: "
    assert all(problem.startswith(prefix) for problem in caught.value.problems)
    return [problem.removeprefix(prefix) for problem in caught.value.problems]


def with_environments(environments: str) -> str:
    return VALID + textwrap.dedent(environments)


# --- valid manifests -------------------------------------------------------------------------


def test_valid_manifest_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)

    manifest = load_manifest(path)

    assert manifest.app == "shop"
    assert manifest.registry == "127.0.0.1:5000"
    assert manifest.root == tmp_path
    assert manifest.source == path
    assert manifest.e2e_tests is None
    orders = manifest.services["orders"]
    assert orders == Service(
        path="services/orders",
        port=8002,
        depends_on=["inventory", "payments"],
    )
    assert orders.dockerfile == "Dockerfile"
    assert orders.health == "/healthz"
    assert orders.runner == "container" and orders.test_target is None
    # left out: the service's language decides its commands (relay.stages.plan)
    assert orders.build is None and orders.unit_tests is None and orders.integration_tests is None
    assert orders.sast is not None and orders.sast.command is None
    assert orders.sast.fail_on == "high"
    assert manifest.services["inventory"].depends_on == []


def test_default_environments(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID))

    assert list(manifest.environments) == ["dev", "staging", "prod"]
    dev, staging, prod = manifest.environments.values()
    assert dev == Environment(port_offset=10000, secrets="dev-config")
    assert staging == Environment(port_offset=12000, secrets="staging-config")
    assert prod == Environment(
        port_offset=14000,
        secrets="prod-config",
        strategy="canary",
        approval=Approval(required=True),
    )
    assert dev.platform == "docker"
    assert dev.strategy == "rolling"
    assert dev.canary_steps == [10, 50, 100]
    assert dev.approval == Approval(
        required=False, timeout_seconds=3600, approvers=[], allow_self_approval=False
    )


def test_explicit_environments_keep_their_order_and_get_name_based_defaults(
    tmp_path: Path,
) -> None:
    text = with_environments(
        """\
        environments:
          qa: {port_offset: 10000}
          prod: {port_offset: 12000, approval: {timeout_seconds: 600}}
          dev: {port_offset: 14000, secrets: shared}
        """
    )

    manifest = load_manifest(write(tmp_path, text))

    assert list(manifest.environments) == ["qa", "prod", "dev"]
    assert manifest.environments["qa"].secrets == "qa-config"
    assert manifest.environments["qa"].approval.required is False
    assert manifest.environments["prod"].approval == Approval(required=True, timeout_seconds=600)
    assert manifest.environments["dev"].secrets == "shared"


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = relay.manifest.__doc__ or ""
    match = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert match, "the module docstring should hold a complete yaml example"
    data = yaml.safe_load(match.group(1))

    manifest = parse_manifest(data, tmp_path / "relay.yaml")

    assert list(manifest.services) == ["orders", "inventory", "payments"]
    assert manifest.environments["prod"].namespace == "shop-prod"
    assert manifest.environments["prod"].approval.required is True
    assert manifest.e2e_tests == ["python", "-m", "pytest", "-q", "tests/e2e"]
    dev = manifest.environments["dev"]
    assert dev.smoke_tests == ["python", "-m", "pytest", "-q", "tests/smoke"]


def test_deployment_settings_have_defaults_and_can_be_set(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000}
          prod:
            port_offset: 14000
            strategy: canary
            analysis: {interval_seconds: 2.5, max_error_rate: 0, on_inconclusive: pause}
            keep_previous_seconds: 0
            smoke_tests: [pytest, -q, tests/smoke]
        """
    )

    dev, prod = load_manifest(write(tmp_path, text)).environments.values()

    assert dev.analysis == Analysis(
        interval_seconds=10,
        max_error_rate=0.05,
        max_response_ms=1000,
        min_requests=20,
        on_inconclusive="fail",
    )
    assert dev.keep_previous_seconds == 30
    assert dev.smoke_tests is None
    assert prod.analysis == Analysis(
        interval_seconds=2.5, max_error_rate=0, on_inconclusive="pause"
    )
    assert prod.keep_previous_seconds == 0
    assert prod.smoke_tests == ["pytest", "-q", "tests/smoke"]


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


def test_commands_accept_strings_and_lists(tmp_path: Path) -> None:
    text = VALID.replace(
        "    port: 8001\n",
        "    port: 8001\n    build: [make, build]\n    unit_tests: pytest -k 'not slow'\n",
    )

    inventory = load_manifest(write(tmp_path, text)).services["inventory"]

    assert inventory.build == ["make", "build"]
    assert inventory.unit_tests == ["pytest", "-k", "not slow"]


def test_helpers(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID))
    orders = manifest.services["orders"]

    assert orders.directory(manifest.root) == tmp_path / "services" / "orders"
    assert manifest.image_repository("orders") == "127.0.0.1:5000/shop/orders"
    assert manifest.dependency_graph() == {
        "gateway": ["orders"],
        "orders": ["inventory", "payments"],
        "inventory": [],
        "payments": [],
    }
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        manifest.image_repository("nope")


def test_ports_on_docker_have_two_slots_above_the_public_port() -> None:
    service = Service(path="services/orders", port=8002)
    docker = Environment(port_offset=10000, secrets="dev-config")
    kubernetes = Environment(platform="kubernetes", namespace="shop-prod", secrets="prod-config")

    assert docker.ports(service) == ServicePorts(public=18002, blue=18102, green=18202)
    assert kubernetes.ports(service) == ServicePorts(public=8002, blue=8002, green=8002)


def test_parse_manifest_does_not_check_files_by_default(tmp_path: Path) -> None:
    data = yaml.safe_load(VALID)

    manifest = parse_manifest(data, tmp_path / "relay.yaml")

    assert manifest.root == tmp_path
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, tmp_path / "relay.yaml", check_files=True)
    assert len(caught.value.problems) == 4  # no service directory exists


# --- one rule at a time ----------------------------------------------------------------------


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


def test_unknown_dependency(tmp_path: Path) -> None:
    text = VALID.replace("[inventory, payments]", "[payments, invntory]")

    assert problems(tmp_path, text) == [
        "services.orders.depends_on[1]: unknown service 'invntory'; "
        "write one of: gateway, inventory, payments (did you mean 'inventory'?)"
    ]


def test_unknown_dependency_without_a_close_match(tmp_path: Path) -> None:
    text = VALID.replace("[inventory, payments]", "[inventory, payments, shipping]")

    assert problems(tmp_path, text) == [
        "services.orders.depends_on[2]: unknown service 'shipping'; "
        "write one of: gateway, inventory, payments"
    ]


def test_self_dependency(tmp_path: Path) -> None:
    text = VALID.replace("[inventory, payments]", "[inventory, orders]")

    assert problems(tmp_path, text) == [
        "services.orders.depends_on[1]: 'orders' depends on itself; "
        "remove it from its own depends_on"
    ]


def test_repeated_dependency(tmp_path: Path) -> None:
    text = VALID.replace("[inventory, payments]", "[inventory, payments, inventory]")

    assert problems(tmp_path, text) == [
        "services.orders.depends_on[2]: 'inventory' is listed twice; remove the repeat"
    ]


def test_each_dependency_cycle_is_named_in_order(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8001\n", "    port: 8001\n    depends_on: [orders]\n").replace(
        "    port: 8003\n", "    port: 8003\n    depends_on: [gateway]\n"
    )

    assert problems(tmp_path, text) == [
        "services: dependency cycle orders -> inventory -> orders; "
        "remove one of these depends_on entries",
        "services: dependency cycle gateway -> orders -> payments -> gateway; "
        "remove one of these depends_on entries",
    ]


def test_duplicate_service_port(tmp_path: Path) -> None:
    text = VALID.replace("port: 8003", "port: 8002")

    assert problems(tmp_path, text) == [
        "services.payments.port: 8002 is already used by services.orders; "
        "give each service its own port"
    ]


def test_computed_ports_colliding_in_one_environment(tmp_path: Path) -> None:
    text = VALID.replace("port: 8003", "port: 8102")

    assert problems(tmp_path, text) == [
        "services.payments.port: port 18102 in environments.dev is both the blue slot of orders "
        "(8002 + 10000 + 100) and the public port of payments (8102 + 10000); on docker each "
        "service also takes the two slot ports 100 and 200 above its public port, so choose "
        "service ports that are not 100 or 200 apart"
    ]


def test_computed_ports_colliding_across_environments(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000}
          staging: {port_offset: 10200}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.staging.port_offset: port 18200 is both the green slot of gateway in dev "
        "(8000 + 10000 + 200) and the public port of gateway in staging (8000 + 10200); "
        "choose port_offset values at least 204 apart"
    ]


def test_computed_ports_in_the_ephemeral_range(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 30000}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.dev.port_offset: services.payments would get port 38203 in "
        "environments.dev (its green slot: 8003 + 30000 + 200), above 32767 (ports above it "
        "are Linux's ephemeral range, where outgoing connections take their local ports); "
        "choose a port_offset of at most 24564"
    ]


def test_docker_environment_needs_a_port_offset(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {strategy: rolling}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.dev.port_offset: missing; docker environments need a port_offset "
        "(public port = service port + port_offset), such as port_offset: 10000"
    ]


def test_platform_specific_keys(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000, namespace: shop-dev}
          prod: {platform: kubernetes, port_offset: 14000}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.dev.namespace: only kubernetes environments use a namespace; "
        "remove it, or set platform: kubernetes",
        "environments.prod.namespace: missing; kubernetes environments need a namespace, "
        "such as namespace: shop-prod",
        "environments.prod.port_offset: only docker environments use port_offset; "
        "remove it, or set platform: docker",
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            "[10, 50]",
            [
                "environments.prod.canary_steps: ends at 50, not 100; end with 100 so the new "
                "version finally takes all traffic, such as [10, 50, 100]"
            ],
            id="does-not-end-at-100",
        ),
        pytest.param(
            "[50, 20, 100]",
            [
                "environments.prod.canary_steps[1]: 20 is not above the step before it (50); "
                "write each weight larger than the last, such as [10, 50, 100]"
            ],
            id="not-increasing",
        ),
        pytest.param(
            "[0, 50, 100, 150]",
            [
                "environments.prod.canary_steps[0]: 0 is not a traffic weight; "
                "write a percentage from 1 to 100",
                "environments.prod.canary_steps[3]: 150 is not a traffic weight; "
                "write a percentage from 1 to 100",
                "environments.prod.canary_steps: ends at 150, not 100; end with 100 so the new "
                "version finally takes all traffic, such as [10, 50, 100]",
            ],
            id="out-of-range",
        ),
        pytest.param(
            "[]",
            [
                "environments.prod.canary_steps: is empty; write increasing traffic "
                "percentages ending at 100, such as [10, 50, 100]"
            ],
            id="empty",
        ),
    ],
)
def test_canary_steps(tmp_path: Path, steps: str, expected: list[str]) -> None:
    text = with_environments(
        f"""\
        environments:
          prod: {{port_offset: 14000, strategy: canary, canary_steps: {steps}}}
        """
    )

    assert problems(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            "/srv/orders",
            "services.orders.path: '/srv/orders' is absolute; write a path relative to the "
            "directory of relay.yaml, such as 'services/orders'",
            id="absolute",
        ),
        pytest.param(
            "services/../../orders",
            "services.orders.path: 'services/../../orders' goes up with '..'; write a path "
            "inside the directory of relay.yaml, such as 'services/orders'",
            id="escapes",
        ),
    ],
)
def test_service_path_stays_inside_the_manifest_directory(
    tmp_path: Path, path: str, expected: str
) -> None:
    text = VALID.replace("path: services/orders", f"path: {path}")

    assert problems(tmp_path, text) == [expected]


def test_missing_service_directory(tmp_path: Path) -> None:
    text = VALID.replace("path: services/orders", "path: services/order")

    assert problems(tmp_path, text) == [
        f"services.orders.path: directory 'services/order' does not exist in {tmp_path}; "
        "create it or correct the path"
    ]


def test_missing_dockerfile(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8002\n", "    port: 8002\n    dockerfile: Containerfile\n")

    assert problems(tmp_path, text) == [
        "services.orders.dockerfile: 'services/orders/Containerfile' does not exist; "
        "add it or set dockerfile to a file relative to 'services/orders'"
    ]


def test_files_are_not_checked_when_told_not_to(tmp_path: Path) -> None:
    path = write(tmp_path, VALID, scaffold=False)

    assert load_manifest(path, check_files=False).app == "shop"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8001", "    port: 8001: 8002")

    assert problems(tmp_path, text) == [
        "line 13, column 15: invalid YAML: mapping values are not allowed here; "
        "check the indentation and quoting there"
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
            "services.payments.path: required key is missing; add path: services/orders",
            id="missing",
        ),
    ],
)
def test_pydantic_errors_in_the_manifest_words(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    assert replace in VALID
    assert problems(tmp_path, VALID.replace(replace, by, 1)) == [expected]


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


# --- the file itself ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"

    with pytest.raises(ManifestError) as caught:
        load_manifest(path)

    assert caught.value.problems == [
        f"{path}: file not found; create it (see relay/manifest.py for an example) or fix the path"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "",
            "the file is empty; write a release manifest with at least 'app:' and 'services:'",
            id="empty",
        ),
        pytest.param(
            "- app: shop\n",
            "the top level is a list, not a mapping; start the file with keys such as "
            "'app: shop' and 'services:'",
            id="list",
        ),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


# --- all problems at once ----------------------------------------------------------------


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        VALID.replace("    depends_on: [orders]", "    dependson: [orders]")
        .replace("[inventory, payments]", "[inventory, payment]")
        .replace("port: 8003", "port: 8002")
    )

    assert problems(tmp_path, text) == [
        "services.gateway.dependson: unknown key; did you mean 'depends_on'?",
        "services.orders.depends_on[1]: unknown service 'payment'; "
        "write one of: gateway, inventory, payments (did you mean 'payments'?)",
        "services.payments.port: 8002 is already used by services.orders; "
        "give each service its own port",
    ]


def test_cross_field_checks_still_run_when_the_structure_is_invalid(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev: {port_offset: 10000, strategy: bluegreen}
          prod: {platform: kubernetes}
        """
    ).replace("[inventory, payments]", "[inventory, orders]")

    assert problems(tmp_path, text, scaffold=False) == [
        "environments.dev.strategy: Input should be 'rolling', 'blue_green' or 'canary' "
        "(got 'bluegreen'); write one of: rolling, blue_green, canary",
        "services.orders.depends_on[1]: 'orders' depends on itself; "
        "remove it from its own depends_on",
        "environments.prod.namespace: missing; kubernetes environments need a namespace, "
        "such as namespace: shop-prod",
        f"services.gateway.path: directory 'services/gateway' does not exist in {tmp_path}; "
        "create it or correct the path",
        f"services.orders.path: directory 'services/orders' does not exist in {tmp_path}; "
        "create it or correct the path",
        f"services.inventory.path: directory 'services/inventory' does not exist in "
        f"{tmp_path}; create it or correct the path",
        f"services.payments.path: directory 'services/payments' does not exist in "
        f"{tmp_path}; create it or correct the path",
    ]


# --- the error ----------------------------------------------------------------------------


def test_manifest_error_lists_each_problem_under_a_header() -> None:
    error = ManifestError(Path("relay.yaml"), ["relay.yaml: a: one", "relay.yaml: b: two"])

    assert str(error) == (
        "relay.yaml: 2 problems in the release manifest\n  relay.yaml: a: one\n  relay.yaml: b: two"
    )
    assert str(ManifestError(Path("relay.yaml"), ["relay.yaml: a: one"])).startswith(
        "relay.yaml: 1 problem in the release manifest\n"
    )


def test_manifest_error_is_terminal_and_survives_pickling() -> None:
    error = ManifestError(Path("relay.yaml"), ["relay.yaml: a: one"])

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, ManifestError)
    assert isinstance(copy, TerminalError)
    assert isinstance(copy, RelayError)
    assert (copy.path, copy.problems, str(copy)) == (error.path, error.problems, str(error))


def test_manifest_is_immutable(tmp_path: Path) -> None:
    manifest: Manifest = load_manifest(write(tmp_path, VALID))

    field = "app"
    with pytest.raises(ValueError, match="frozen"):
        setattr(manifest, field, "other")


def test_unknown_services_and_environments_in_a_command_are_named(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, VALID))
    manifest.check_services(list(manifest.services))
    with pytest.raises(TerminalError, match=r"no service named gatway, ordrs; use one of: "):
        manifest.check_services(["gatway", "ordrs", next(iter(manifest.services))])
    with pytest.raises(TerminalError, match=r"no environment 'qa'; use one of: "):
        manifest.check_environment("qa")


# --- security gates ----------------------------------------------------------------------------


def test_security_gates_default_to_gating_on_pypi_advisories_and_every_check(
    tmp_path: Path,
) -> None:
    manifest = load_manifest(write(tmp_path, VALID))

    assert manifest.security.packages.fail_on == "any"
    assert manifest.security.packages.advisories == "https://pypi.org/pypi"
    assert manifest.security.packages.allow == []
    assert manifest.security.compliance.fail_on == "any"
    assert manifest.security.compliance.skip == []
    assert manifest.services["orders"].sast.sarif is None


def test_security_settings_and_a_sarif_report_are_read(tmp_path: Path) -> None:
    text = VALID.replace(
        "    port: 8001\n",
        "    port: 8001\n    sast: {command: [sh, scan.sh], sarif: out/x.sarif}\n",
    ) + textwrap.dedent(
        """\
        security:
          packages:
            fail_on: never
            advisories: http://127.0.0.1:8999/pypi/
            allow: [{id: CVE-2019-10906, reason: sandbox unused, until: 2030-01-01}]
          compliance:
            skip: [{id: CKV_DOCKER_2, reason: Relay checks /healthz}]
        """
    )
    manifest = load_manifest(write(tmp_path, text))

    assert manifest.services["inventory"].sast.sarif == "out/x.sarif"
    assert manifest.security.packages.advisories == "http://127.0.0.1:8999/pypi"
    assert manifest.security.packages.allow[0].id == "CVE-2019-10906"
    assert manifest.security.compliance.skip[0].reason == "Relay checks /healthz"


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
        "'https://pypi.org/pypi'",
        "security.packages.allow[0].reason: required key is missing; add reason: not reachable "
        "from our code",
        "security.packages.allow[0].until: required key is missing; add until: 2027-01-31",
        "security.compliance.skip[0].reason: required key is missing; add reason: not reachable "
        "from our code",
    ]


# --- where stages run ------------------------------------------------------------------------


def test_stage_settings_are_read(tmp_path: Path) -> None:
    text = VALID.replace(
        "    port: 8001\n",
        "    port: 8001\n    stage_image: python:3.12-slim\n"
        "    setup: pip install -r requirements.txt\n    setup_files: [requirements-dev.txt]\n"
        "    unit_tests: null\n    sast: null\n",
    )
    inventory = load_manifest(write(tmp_path, text)).services["inventory"]
    assert inventory.stage_image == "python:3.12-slim"
    assert inventory.setup == ["pip", "install", "-r", "requirements.txt"]
    assert inventory.setup_files == ["requirements-dev.txt"]
    assert inventory.unit_tests is None and "unit_tests" in inventory.model_fields_set
    assert inventory.sast is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            "    setup: make deps\n",
            "services.inventory.setup: needs stage_image, the image the setup runs in",
        ),
        (
            "    test_target: test\n    stage_image: python:3.12-slim\n",
            "services.inventory.stage_image: test_target and stage_image both name where",
        ),
        (
            "    runner: host\n    stage_image: python:3.12-slim\n",
            "services.inventory.stage_image: applies to runner: container only",
        ),
        (
            "    runner: vm\n",
            "services.inventory.runner: Input should be 'container' or 'host'",
        ),
    ],
)
def test_stage_settings_that_contradict_each_other_are_refused(
    tmp_path: Path, settings: str, expected: str
) -> None:
    text = VALID.replace("    port: 8001\n", "    port: 8001\n" + settings)
    found = problems(tmp_path, text)
    assert any(p.startswith(expected) for p in found), found


def test_a_test_target_the_dockerfile_lacks_names_the_stages_it_has(tmp_path: Path) -> None:
    text = VALID.replace("    port: 8001\n", "    port: 8001\n    test_target: tests\n")
    path = write(tmp_path, text)
    (tmp_path / "services/inventory/Dockerfile").write_text(
        "FROM python:3.11-slim AS base\nFROM base AS test\nFROM base\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.problems == [
        f"{path}: services.inventory.test_target: 'tests' is not a stage of "
        "services/inventory/Dockerfile (it has: base, test); add `FROM ... AS tests` to it, or "
        "write the name of a stage it has"
    ]


@pytest.mark.parametrize(
    ("link", "field"),
    [
        ("services/inventory", "path"),  # the service directory itself
        ("services", "path"),  # a parent of it: a link at any depth
        ("services/inventory/Dockerfile", "dockerfile"),
        ("services/inventory/scan.sarif", "sast.sarif"),
    ],
)
def test_a_path_that_links_outside_the_repository_is_refused_naming_the_link(
    tmp_path: Path, link: str, field: str
) -> None:
    repository, outside = tmp_path / "repo", tmp_path / "outside"
    (repository / ".git").mkdir(parents=True)
    text = VALID.replace("    port: 8001\n", "    port: 8001\n    sast: {sarif: scan.sarif}\n")
    path = write(repository, text)
    (outside / "services" / "inventory").mkdir(parents=True)
    (outside / "services" / "inventory" / "Dockerfile").write_text("FROM scratch\n")
    (outside / "secret.sarif").write_text("{}")
    target = {
        "services/inventory": outside / "services" / "inventory",
        "services": outside / "services",
        "services/inventory/Dockerfile": outside / "services" / "inventory" / "Dockerfile",
        "services/inventory/scan.sarif": outside / "secret.sarif",
    }[link]
    victim = repository / link
    if victim.is_dir():
        for child in sorted(victim.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        victim.rmdir()
    elif victim.exists():
        victim.unlink()
    victim.symlink_to(target)

    with pytest.raises(ManifestError) as caught:
        load_manifest(path)

    [problem] = [p for p in caught.value.problems if f"services.inventory.{field}:" in p]
    assert (
        f"services.inventory.{field}: '{link}' is a symbolic link to {target.resolve()}" in problem
    )
    assert "outside the repository" in problem
    relay.manifest.load_manifest(path, check_files=False)  # the structure alone is fine


def test_a_link_inside_the_repository_is_fine(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    path = write(tmp_path, VALID)
    shared = tmp_path / "shared-inventory"
    (tmp_path / "services/inventory").rename(shared)
    (tmp_path / "services/inventory").symlink_to(shared)
    assert load_manifest(path).services["inventory"].path == "services/inventory"
