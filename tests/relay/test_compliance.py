"""Compliance: Relay's own policies (pure, table tests) and checkov itself (the real tool,
from `.venv-tools`), each violation naming where, the rule and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from relay.compliance import (
    COVERED_BY_RELAY,
    Violation,
    as_rows,
    dockerfile_policies,
    environment_policies,
    image_policies,
    judge,
    kubernetes_policies,
    open_violations,
    run_checkov,
)
from relay.manifest import Compliance, SkippedCheck, parse_manifest

SHOP_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG GIT_SHA=unknown
WORKDIR /app
COPY app.py /app/app.py
USER 65534
CMD ["python3", "/app/app.py"]
"""
DIGEST = "127.0.0.1:5000/shop/orders@sha256:" + "a" * 64


def ids(violations: list[Violation]) -> list[str]:
    return [v.rule_id for v in violations]


# --- Dockerfiles --------------------------------------------------------------------------------


def test_a_pinned_non_root_dockerfile_passes() -> None:
    assert dockerfile_policies(SHOP_DOCKERFILE, "services/orders/Dockerfile") == []


@pytest.mark.parametrize(
    ("dockerfile", "where"),
    [
        ('FROM python:3.11-slim\nCMD ["python3"]\n', "Dockerfile:1"),  # no USER at all
        ("FROM python:3.11-slim\nUSER root\n", "Dockerfile:2"),
        ("FROM python:3.11-slim\nUSER 0:0\n", "Dockerfile:2"),
        ("FROM python:3.11-slim\nUSER 65534\nRUN true\nuser root\n", "Dockerfile:4"),
        # a builder stage's USER does not make the final stage non-root
        ("FROM python:3.11 AS build\nUSER 65534\nFROM python:3.11-slim\nCMD x\n", "Dockerfile:3"),
        ("ARG WHO=root\nFROM python:3.11-slim\nUSER ${WHO}\n", "Dockerfile:3"),
    ],
)
def test_running_as_root_is_named_with_the_fix(dockerfile: str, where: str) -> None:
    (violation,) = dockerfile_policies(dockerfile, "Dockerfile")

    assert violation.where == where
    assert violation.rule_id == "RELAY_NON_ROOT"
    assert str(violation).startswith(
        f"{where}: RELAY_NON_ROOT the container does not run as root: "
    )
    assert "USER 65534" in violation.fix


@pytest.mark.parametrize(
    "base",
    ["python", "python:latest", "127.0.0.1:5000/base", "127.0.0.1:5000/base:latest"],
)
def test_a_latest_or_untagged_base_image_is_refused(base: str) -> None:
    dockerfile = f"ARG BASE={base}\nFROM ${{BASE}}\nUSER 65534\n"

    assert [str(v) for v in dockerfile_policies(dockerfile, "Dockerfile")] == [
        "Dockerfile:2: RELAY_NO_LATEST no image is 'latest' or untagged: pin a version tag or a "
        "digest, such as python:3.11-slim"
    ]


@pytest.mark.parametrize(
    "base",
    ["python:3.11-slim", "127.0.0.1:5000/base:1.2", "python@sha256:" + "b" * 64, "scratch"],
)
def test_a_pinned_base_image_passes(base: str) -> None:
    assert dockerfile_policies(f"FROM {base}\nUSER 65534\n", "Dockerfile") == []


def test_a_base_image_arg_without_default_cannot_be_judged() -> None:
    (violation,) = dockerfile_policies("FROM ${BASE}\nUSER 1000\n", "Dockerfile")

    assert violation.rule_id == "RELAY_NO_LATEST"
    assert "give the ARG in '${BASE}' a default" in violation.fix


def test_continuations_and_comments_are_followed() -> None:
    dockerfile = (
        "FROM python:3.11-slim\n# USER root\nRUN apt-get update && \\\n    true\n"
        "USER \\\n  nobody\n"
    )

    assert dockerfile_policies(dockerfile, "Dockerfile") == []


def test_a_later_stage_may_build_from_an_earlier_one() -> None:
    dockerfile = "FROM python:3.11 AS base\nFROM base\nUSER 65534\n"

    assert dockerfile_policies(dockerfile, "Dockerfile") == []


# --- images and environments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "environment", "expected"),
    [
        (DIGEST, "prod", []),
        ("127.0.0.1:5000/shop/orders:v1", "prod", ["RELAY_DIGEST"]),
        ("127.0.0.1:5000/shop/orders:latest", "prod", ["RELAY_DIGEST", "RELAY_NO_LATEST"]),
        ("127.0.0.1:5000/shop/orders:v1", "dev", []),
        ("127.0.0.1:5000/shop/orders", "dev", ["RELAY_NO_LATEST"]),
    ],
)
def test_images_are_pinned(image: str, environment: str, expected: list[str]) -> None:
    assert ids(image_policies(image, environment, "services.orders image")) == expected


def manifest(prod: dict[str, Any]) -> Any:
    data = {
        "app": "shop",
        "services": {"orders": {"path": "services/orders", "port": 8002}},
        "environments": {"dev": {"port_offset": 10000}, "prod": {"port_offset": 14000, **prod}},
    }
    return parse_manifest(data, "relay.yaml")


def test_prod_without_approval_is_refused_only_when_deploying_to_prod() -> None:
    unapproved = manifest({"approval": {"required": False}})

    assert environment_policies(unapproved, "dev") == []
    assert [str(v) for v in environment_policies(unapproved, "prod")] == [
        "relay.yaml environments.prod.approval: RELAY_APPROVAL production requires an approval: "
        "set environments.prod.approval.required: true in relay.yaml"
    ]
    assert environment_policies(manifest({}), "prod") == []  # prod's default: required


# --- Kubernetes objects --------------------------------------------------------------------------


def deployment(container: dict[str, Any], pod_security: dict[str, Any] | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "orders", "namespace": "shop-prod"},
        "spec": {
            "selector": {"matchLabels": {"app": "orders"}},
            "template": {
                "metadata": {"labels": {"app": "orders"}},
                "spec": {
                    "securityContext": pod_security or {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [{"name": "orders", "image": DIGEST, **container}],
                },
            },
        },
    }


LIMITS = {"resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}


def test_a_deployment_with_limits_non_root_by_digest_passes() -> None:
    assert kubernetes_policies([deployment(LIMITS)], "prod") == []


def test_a_deployment_without_limits_is_refused_naming_the_container() -> None:
    (violation,) = kubernetes_policies([deployment({})], "prod")

    assert str(violation) == (
        "Deployment/shop-prod/orders container orders: RELAY_LIMITS every container has CPU and "
        "memory limits: set environments.<env>.kubernetes.resources.limits: "
        "{cpu: 500m, memory: 256Mi}; missing: cpu, memory"
    )


@pytest.mark.parametrize(
    ("pod", "container", "refused"),
    [
        ({}, {}, True),
        ({"runAsUser": 0}, {}, True),
        ({"runAsNonRoot": True}, {}, False),
        ({"runAsNonRoot": True}, {"runAsUser": 0}, True),  # the container's own context wins
        ({"runAsUser": 0}, {"runAsUser": 1000}, False),
    ],
)
def test_pods_must_not_run_as_root(pod: dict, container: dict, refused: bool) -> None:
    obj = deployment({**LIMITS, "securityContext": container}, pod or {"fsGroup": 1})

    assert ("RELAY_NON_ROOT" in ids(kubernetes_policies([obj], "dev"))) is refused


def test_a_tagged_image_in_prod_and_other_kinds_are_ignored() -> None:
    objects = [
        deployment({**LIMITS, "image": "127.0.0.1:5000/shop/orders:v1"}),
        {"kind": "Service", "metadata": {"name": "orders"}},
    ]

    assert ids(kubernetes_policies(objects, "prod")) == ["RELAY_DIGEST"]


# --- the verdict -----------------------------------------------------------------------------


def test_a_skipped_check_is_listed_with_its_reason_and_does_not_stop() -> None:
    violations = [Violation("Dockerfile:3", "CKV_DOCKER_9", "apt", "use apt-get")]
    skip = [SkippedCheck(id="ckv_docker_9", reason="the build image has no apt-get")]

    assert not judge(violations, Compliance()).passed
    verdict = judge(violations, Compliance(skip=skip))

    assert verdict.passed
    assert as_rows(verdict)[0]["status"] == "skipped: the build image has no apt-get"
    assert open_violations(verdict) == ()


@pytest.mark.parametrize("rule_id", ["CKV_DOCKER_2", "CKV_DOCKER_7"])
def test_checks_relay_does_itself_are_listed_as_covered_and_do_not_stop(rule_id: str) -> None:
    violations = [Violation("Dockerfile:2", rule_id, "checkov's rule", "checkov's fix")]

    verdict = judge(violations, Compliance())

    assert verdict.passed
    (row,) = as_rows(verdict)
    assert row["rule"].startswith(rule_id)  # never hidden
    assert row["status"].startswith("covered by Relay: ")
    assert row["status"].removeprefix("covered by Relay: ") == COVERED_BY_RELAY[rule_id]


def test_never_reports_without_stopping() -> None:
    violations = [Violation("Dockerfile:1", "RELAY_NON_ROOT", "non-root", "USER 65534")]

    assert not judge(violations, Compliance()).passed
    assert judge(violations, Compliance(fail_on="never")).passed


# --- checkov, the real tool ---------------------------------------------------------------------


def test_checkov_names_a_dockerfile_running_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "home"))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:3.11-slim\nCOPY app.py /app.py\nCMD ["python3"]\n')

    found = {v.rule_id: v for v in run_checkov(dockerfile, "dockerfile", label="svc/Dockerfile")}

    assert str(found["CKV_DOCKER_3"]) == (
        "svc/Dockerfile:1: CKV_DOCKER_3 Ensure that a user for the container has been created: "
        "add `USER 65534` (or create a user with RUN useradd and switch to it)"
    )
    assert "CKV_DOCKER_2" in found
    # the second run is answered from the cache: same bytes, same checkov
    assert list((tmp_path / "home" / "checkov").glob("*.json"))
    assert run_checkov(dockerfile, "dockerfile", label="svc/Dockerfile") == list(found.values())


def test_checkov_names_a_kubernetes_deployment_without_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "home"))
    rendered = tmp_path / "orders.yaml"
    rendered.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {{name: orders, namespace: shop-prod}}
            spec:
              selector: {{matchLabels: {{app: orders}}}}
              template:
                metadata: {{labels: {{app: orders}}}}
                spec:
                  containers: [{{name: orders, image: "{DIGEST}"}}]
            """
        )
    )

    found = {v.rule_id: v for v in run_checkov(rendered, "kubernetes", label="rendered orders")}

    assert str(found["CKV_K8S_11"]).startswith(
        "rendered orders Deployment.shop-prod.orders: CKV_K8S_11 "
    )
    assert found["CKV_K8S_11"].fix == "set resources.limits.cpu on the container"
    assert found["CKV_K8S_13"].fix == "set resources.limits.memory on the container"


def test_the_readmes_dockerfile_passes_the_default_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dockerfile README.md recommends, with no `security.compliance` at all: checkov's
    complaints about it are the two Relay covers, listed as such."""
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "home"))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```dockerfile\n", 1)[1].split("```", 1)[0]
    assert block.startswith("ARG BASE_IMAGE=python:3.11-slim\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(block)

    found = run_checkov(dockerfile, "dockerfile", label="Dockerfile")
    found += dockerfile_policies(block, "Dockerfile")
    verdict = judge(found, Compliance())

    assert verdict.passed, [str(v) for v in open_violations(verdict)]
    covered = {row["rule"].split()[0] for row in as_rows(verdict) if "covered" in row["status"]}
    assert covered == {"CKV_DOCKER_2", "CKV_DOCKER_7"}
