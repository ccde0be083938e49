"""The `relay` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from deployments.cli import parser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop" / "relay.yaml"
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


def relay_in(directory: Path, *args: str, ledger: Path) -> subprocess.CompletedProcess[str]:
    """`relay ARGS` run inside `directory`, with its own ledger."""
    env = {**os.environ, "RELAY_LEDGER": str(ledger), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*RELAY, *args], capture_output=True, text=True, timeout=60, cwd=directory, env=env
    )


def test_the_application_comes_from_the_relay_yaml_where_the_command_runs(tmp_path: Path) -> None:
    (tmp_path / "relay.yaml").write_text("app: bakery\nservices:\n  ovens: {path: ., port: 8100}\n")
    ledger = tmp_path / "ledger.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    inside = relay_in(tmp_path, "history", "ovens", "--env", "prod", ledger=ledger)
    outside = relay_in(elsewhere, "history", "ovens", ledger=ledger)
    metrics = relay_in(tmp_path, "metrics", ledger=ledger)

    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == "no deployments of bakery/ovens in prod"
    assert outside.returncode == 1
    assert "no relay.yaml here; pass --app NAME" in outside.stderr
    assert metrics.stdout.strip() == "no deployments of bakery in the last 30 days"


def test_version_and_help_for_every_option() -> None:
    version = relay("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"relay {metadata.version('relay')}"

    undocumented = [
        f"relay {name} {action.dest}"
        for name, command in subcommands(parser()).items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == []


def subcommands(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_stack_options_that_cannot_be_honoured_say_why_and_change_nothing() -> None:
    before = relay("stack", "env").stdout
    too_many = relay("stack", "up", "--workers", "0")
    assert too_many.returncode == 1
    assert too_many.stderr.strip() == (
        "relay stack up: --workers 0: the local stack runs 1 to 8 workers"
    ), "one line, no traceback"
    misplaced = relay("stack", "status", "--postgres")
    assert misplaced.returncode == 1
    assert "--postgres, --sqlite and --workers go with `relay stack up`" in misplaced.stderr
    assert "Traceback" not in misplaced.stderr
    assert relay("stack", "env").stdout == before, "the remembered mode is unchanged"
