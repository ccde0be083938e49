"""docs/relay.yaml: the complete example is a valid manifest, and the defaults it writes out
are the models' defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from relay.manifest import (
    Analysis,
    Approval,
    CloudWatch,
    Compliance,
    Environment,
    ImageScan,
    Kubernetes,
    Manifest,
    Packages,
    Sast,
    Service,
    parse_manifest,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "relay.yaml"


def example() -> Manifest:
    return parse_manifest(yaml.safe_load(EXAMPLE.read_text()), EXAMPLE, check_files=False)


def test_the_documented_example_is_valid() -> None:
    manifest = example()

    assert manifest.app == "shop"
    assert manifest.root == EXAMPLE.parent
    assert list(manifest.services) == ["orders", "inventory", "payments"]
    assert manifest.services["orders"].depends_on == ["inventory", "payments"]
    assert list(manifest.environments) == ["dev", "staging", "prod"]
    assert manifest.environments["prod"].namespace == "shop-prod"
    assert manifest.environments["prod"].approval.required is True
    assert manifest.e2e_tests == ["python", "-m", "pytest", "-q", "tests/e2e"]
    dev = manifest.environments["dev"]
    assert dev.smoke_tests == ["python", "-m", "pytest", "-q", "tests/smoke"]


def test_the_defaults_it_writes_out_are_the_models_defaults() -> None:
    manifest = example()
    orders = manifest.services["orders"]
    dev, prod = manifest.environments["dev"], manifest.environments["prod"]
    default_service = Service(path="services/orders", port=8002)
    default_environment = Environment(secrets="dev-config")

    assert manifest.registry == Manifest.model_fields["registry"].default
    written_out = ("dockerfile", "build_args", "health", "public", "runner", "stage_image")
    for field in (*written_out, "setup", "setup_files"):
        assert getattr(orders, field) == getattr(default_service, field), field
    assert orders.sast is not None
    assert (orders.sast.fail_on, orders.sast.sarif) == (Sast().fail_on, Sast().sarif)
    assert dev.platform == default_environment.platform
    assert dev.strategy == default_environment.strategy
    assert dev.canary_steps == default_environment.canary_steps
    assert dev.keep_previous_seconds == default_environment.keep_previous_seconds
    assert dev.secrets == "dev-config"  # the default, "<environment>-config"
    assert dev.approval == Approval()
    assert dev.approval.timeout_seconds == 3600
    assert dev.analysis == Analysis()
    assert prod.kubernetes == Kubernetes()
    assert manifest.image_scan.source == ImageScan().source
    assert manifest.image_scan.fail_on == ImageScan().fail_on
    packages = manifest.security.packages
    assert (packages.fail_on, packages.advisories) == (Packages().fail_on, Packages().advisories)
    assert manifest.security.compliance.fail_on == Compliance().fail_on
    assert manifest.cloudwatch == CloudWatch()
