"""relay/manifest/fields.py: the field types and their validators."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.manifest import load_manifest
from tests.relay.manifest.documents import VALID, problems, write


def test_commands_accept_strings_and_lists(tmp_path: Path) -> None:
    text = VALID.replace(
        "    port: 8001\n",
        "    port: 8001\n    build: [make, build]\n    unit_tests: pytest -k 'not slow'\n",
    )

    inventory = load_manifest(write(tmp_path, text)).services["inventory"]

    assert inventory.build == ["make", "build"]
    assert inventory.unit_tests == ["pytest", "-k", "not slow"]


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
