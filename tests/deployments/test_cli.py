"""The `relay` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "relay.yaml"
RELAY = [sys.executable, "-m", "deployments.cli"]


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAY, *args], capture_output=True, text=True, timeout=60)


def test_validate_accepts_the_example() -> None:
    result = relay("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "5 services" in result.stdout and "dev, staging, prod" in result.stdout


def test_validate_lists_every_problem_with_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "relay.yaml"
    bad.write_text(
        EXAMPLE.read_text()
        .replace("depends_on: [orders]", "depends_on: [order]")
        .replace("port: 8004", "port: 8003")
    )
    result = relay("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}: services.gateway.depends_on[0]: unknown service 'order'" in result.stderr
    assert f"{bad}: services.payments.port: 8003 is already used by services.inventory" in (
        result.stderr
    )


def test_validate_names_a_missing_file(tmp_path: Path) -> None:
    result = relay("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
