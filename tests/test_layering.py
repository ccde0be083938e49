"""`relay/` is the domain: it must stay importable and testable without Prefect."""

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


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_module_does_not_import_prefect_or_upper_layers(path: Path) -> None:
    forbidden = {
        "prefect",
        "prefect_aws",
        "prefect_docker",
        "flows",
        "tasks",
        "blocks",
        "deployments",
    }
    bad = {m for m in imported_modules(path) if m.split(".")[0] in forbidden}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; relay/ must not"


def test_domain_has_modules() -> None:
    assert len(DOMAIN_FILES) > 5
