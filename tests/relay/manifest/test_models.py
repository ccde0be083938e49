"""relay/manifest/models.py: the models, their defaults and helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from relay.errors import TerminalError
from relay.manifest import Analysis, Approval, Environment, Manifest, Service, load_manifest
from tests.relay.manifest.documents import VALID, with_environments, write

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


# --- security gates --------------------------------------------------------------------------


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
