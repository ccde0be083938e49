"""`relay/` is the domain: it must stay importable and testable without Prefect, and it keeps
only what runs in production (the local stack lives in `devstack/`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_FILES = sorted((ROOT / "relay").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# Prefect and every integration of it (`prefect_*`), the layers above the domain, and the
# development stack (`devstack`: it runs nowhere but on a developer's or CI machine).
FORBIDDEN = {"prefect", "devstack", "flows", "tasks", "blocks", "deployments"}


def is_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in FORBIDDEN or top.startswith("prefect_")


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_module_does_not_import_prefect_or_upper_layers(path: Path) -> None:
    bad = {m for m in imported_modules(path) if is_forbidden(m)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; relay/ must not"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("prefect", True),
        ("prefect.flows", True),
        ("prefect_aws", True),
        ("prefect_docker.host", True),
        ("prefect_kubernetes.credentials", True),
        ("devstack", True),
        ("devstack.paths", True),
        ("flows.deploy", True),
        ("deployments.cli", True),
        ("relay.settings", False),
        ("prefecture", False),
        ("docker", False),
        ("kubernetes.client", False),
    ],
)
def test_is_forbidden(module: str, forbidden: bool) -> None:
    assert is_forbidden(module) is forbidden


def test_domain_has_modules() -> None:
    assert len(DOMAIN_FILES) > 5
