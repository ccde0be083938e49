"""`relay render`: what it prints is what the platform applies; every object validates against
the Kubernetes OpenAPI schemas of a current release (kubernetes-validate; the HTTPRoute, a CRD
they do not cover, by a server-side dry run against the real control plane) and passes
checkov's Kubernetes checks, except the ones listed in SKIPPED with their reasons."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deployments.cli import main
from relay.aws.secrets import SecretVersion, ServiceConfig
from relay.compliance import checkov_command
from relay.manifest import parse_manifest
from relay.platforms.kubernetes import Cluster
from relay.platforms.kubernetes.objects import REDACTED, render
from relay.registry import ImageRef
from relay.specs import kubernetes_spec

IMAGE = "127.0.0.1:5000/shop/orders@sha256:" + hashlib.sha256(b"orders").hexdigest()
CONFIG = ServiceConfig((SecretVersion("prod-config", "v1"),), ("DATABASE_URL", "API_KEY"))
# checkov's Kubernetes checks Relay's objects fail on purpose, and why.
SKIPPED = {
    "CKV_K8S_15": "Image Pull Policy should be Always: images are pinned by digest, which "
    "never changes, so IfNotPresent is exact and saves a registry round trip",
    "CKV_K8S_21": "The default namespace should not be used: the namespace is the "
    "environment's (environments.<env>.namespace); checkov sees none in a single file",
    "CKV_K8S_35": "Prefer using secrets as files over secrets as environment variables: the "
    "services read their configuration from the environment (envFrom), by design",
    "CKV_K8S_43": "Image should use digest: it does (repository@sha256:...); checkov does not "
    "recognise a registry with a port before the digest",
}

MANIFEST = {
    "app": "shop",
    "services": {
        "frontend": {
            "path": "services/frontend",
            "port": 8000,
            "depends_on": ["orders"],
            "public": True,
        },
        "orders": {"path": "services/orders", "port": 8002, "depends_on": ["inventory"]},
        "inventory": {"path": "services/inventory", "port": 8001},
    },
    "environments": {
        "dev": {"port_offset": 10000},
        "prod": {
            "platform": "kubernetes",
            "namespace": "shop-prod",
            "strategy": "canary",
            "kubernetes": {"replicas": 3, "progress_deadline_seconds": 120},
        },
    },
}


def rendered(
    strategy: str = "canary", service: str = "orders", traffic: str = "auto"
) -> list[dict[str, Any]]:
    data = json.loads(json.dumps(MANIFEST))
    data["environments"]["prod"]["strategy"] = strategy
    data["environments"]["prod"].setdefault("kubernetes", {})["traffic"] = traffic
    manifest = parse_manifest(data, "relay.yaml")
    return render(
        kubernetes_spec(manifest, "prod", service, ImageRef.parse(IMAGE), "abc", "tree", CONFIG)
    )


@pytest.mark.parametrize("strategy", ["rolling", "blue_green", "canary"])
def test_rendered_objects_validate_against_the_kubernetes_schemas(strategy: str) -> None:
    version = kubernetes_validate.latest_version()
    for obj in rendered(strategy):
        if obj["kind"] == "HTTPRoute":
            continue  # a CRD: see the dry run below
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_http_route_passes_the_crd_schema_on_a_real_api_server(control_plane: Any) -> None:
    (route,) = [obj for obj in rendered("canary") if obj["kind"] == "HTTPRoute"]
    api = control_plane.api_client()
    try:
        stored = Cluster(api).apply(
            route | {"metadata": route["metadata"] | {"namespace": "default"}}, dry_run=True
        )
    finally:
        api.close()
    assert stored["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0


def test_an_alb_canary_renders_an_ingress_with_weighted_target_groups(
    control_plane: Any,
) -> None:
    """`traffic: alb`: an Ingress for the AWS Load Balancer Controller, valid against the
    schema and accepted by a real API server (dry run), all traffic on stable."""
    found = rendered("canary", traffic="alb")
    assert not [o for o in found if o["kind"] == "HTTPRoute"]
    (ingress,) = [o for o in found if o["kind"] == "Ingress"]
    kubernetes_validate.validate(ingress, kubernetes_validate.latest_version(), strict=True)
    notes = ingress["metadata"]["annotations"]
    action = json.loads(notes["alb.ingress.kubernetes.io/actions.orders-weighted"])
    assert [(g["serviceName"], g["weight"]) for g in action["forwardConfig"]["targetGroups"]] == [
        ("orders-stable", 100),
        ("orders-canary", 0),
    ]
    assert notes["alb.ingress.kubernetes.io/scheme"] == "internal"
    api = control_plane.api_client()
    try:
        stored = Cluster(api).apply(
            ingress | {"metadata": ingress["metadata"] | {"namespace": "default"}}, dry_run=True
        )
    finally:
        api.close()
    assert stored["spec"]["ingressClassName"] == "alb"
    assert stored["metadata"]["annotations"] == notes


def test_secret_keys_are_shown_and_values_redacted() -> None:
    (secret,) = [obj for obj in rendered() if obj["kind"] == "Secret"]
    assert secret["stringData"] == {"DATABASE_URL": REDACTED, "API_KEY": REDACTED}
    assert "data" not in secret


def test_network_policy_admits_exactly_the_dependents_tests_and_the_gateway_for_public() -> None:
    (orders,) = [o for o in rendered(service="orders") if o["kind"] == "NetworkPolicy"]
    (frontend,) = [o for o in rendered(service="frontend") if o["kind"] == "NetworkPolicy"]
    tests = {"podSelector": {"matchLabels": {"relay.dev/app": "shop", "relay.dev/role": "tests"}}}
    assert orders["spec"]["ingress"][0]["from"] == [
        tests,
        {
            "podSelector": {
                "matchExpressions": [
                    {"key": "relay.dev/service", "operator": "In", "values": ["frontend"]}
                ]
            }
        },
    ]
    assert frontend["spec"]["ingress"][0]["from"] == [
        tests,
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}},
    ]


@pytest.mark.parametrize("strategy", ["rolling", "blue_green", "canary"])
def test_rendered_objects_pass_checkov(strategy: str, tmp_path: Path) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(rendered(strategy), sort_keys=False))
    run = subprocess.run(
        [
            str(checkov_command()),  # the compliance gate's checkov: missing fails, not skips
            "-f",
            str(path),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--quiet",
            "--skip-check",
            ",".join(SKIPPED),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(run.stdout)
    failed = [
        (c["check_id"], c["check_name"], c["resource"]) for c in report["results"]["failed_checks"]
    ]
    assert failed == [], failed
    assert report["summary"]["passed"] > 0


def test_relay_render_prints_the_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(json.dumps(MANIFEST))
    data["environments"]["prod"]["secrets"] = None  # no AWS needed
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(data))

    code = main(
        ["render", "orders", "prod", "--file", str(tmp_path / "relay.yaml"), "--image", IMAGE]
    )

    assert code == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["NetworkPolicy", "Deployment", "Service", "Service", "Service", "HTTPRoute"]
    assert documents[1]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_relay_render_refuses_a_docker_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(MANIFEST))
    assert (
        main(["render", "orders", "dev", "--file", str(tmp_path / "relay.yaml"), "--image", IMAGE])
        == 1
    )
    assert "name a kubernetes environment" in capsys.readouterr().err
