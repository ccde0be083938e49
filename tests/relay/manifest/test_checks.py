"""relay/manifest/checks.py: the checks across fields, and the files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

import relay.manifest
from relay.errors import ManifestError
from relay.manifest import load_manifest
from tests.relay.manifest.documents import VALID, problems, with_environments, write

# --- dependencies and service ports ----------------------------------------------------------


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


# --- environments ----------------------------------------------------------------------------


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


def test_an_eks_cluster_is_reached_one_way_only(tmp_path: Path) -> None:
    text = with_environments(
        """\
        environments:
          dev:
            platform: kubernetes
            namespace: shop-dev
            kubernetes: {eks_cluster: shop-dev-cluster}
          prod:
            platform: kubernetes
            namespace: shop-prod
            kubernetes: {eks_cluster: prod, kubeconfig: /etc/kube/prod}
        """
    )

    assert problems(tmp_path, text) == [
        "environments.prod.kubernetes: eks_cluster reaches the cluster on its own: remove "
        "cluster, kubeconfig and context, or remove eks_cluster"
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


# --- where stages run ------------------------------------------------------------------------


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


# --- files on disk ---------------------------------------------------------------------------


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
