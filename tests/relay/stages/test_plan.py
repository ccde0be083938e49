"""Which stage commands a service runs: relay.yaml first, then its language's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.manifest import Service
from relay.stages.plan import language_of, stage_commands, stage_environment


def service(**settings: object) -> Service:
    return Service.model_validate({"path": "svc", "port": 8001, **settings})


@pytest.mark.parametrize(
    ("files", "language"),
    [
        (["go.mod", "main.go"], "go"),
        (["package.json", "index.js"], "node"),
        (["pyproject.toml"], "python"),
        (["requirements.txt"], "python"),
        (["app.py"], "python"),
        (["main.rs"], "unknown"),
        (["go.mod", "requirements.txt"], "go"),  # the first marker wins
    ],
)
def test_the_language_comes_from_the_files(tmp_path: Path, files: list[str], language: str) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert language_of(tmp_path) == language


def test_python_defaults_run_tests_only_where_their_folder_is(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    commands = stage_commands(service(), tmp_path)
    assert commands.build == ["python", "-m", "compileall", "-q", "."]
    assert commands.unit_tests == ["python", "-m", "pytest", "-q", "tests/unit"]
    assert commands.sast == ["bandit", "-r", ".", "-f", "json", "-x", "./tests"]
    assert commands.integration_tests is None
    assert "no tests/integration folder" in commands.skipped["integration_tests"]


def test_a_go_service_gets_go_defaults_and_no_python(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/svc\n")
    commands = stage_commands(service(), tmp_path)
    assert commands.build == ["go", "vet", "./..."] and commands.unit_tests == [
        "go",
        "test",
        "./...",
    ]
    assert commands.sast is None and commands.integration_tests is None
    assert (
        commands.skipped["sast"] == "no default for go; set sast.command in relay.yaml to run one"
    )


def test_written_commands_win_and_null_means_none(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("")
    commands = stage_commands(
        service(unit_tests="make test", integration_tests=None, sast=None), tmp_path
    )
    assert commands.unit_tests == ["make", "test"]
    assert commands.integration_tests is None and commands.sast is None
    assert commands.skipped["integration_tests"] == "integration_tests: null in relay.yaml"
    assert commands.skipped["sast"] == "sast: null in relay.yaml"


def test_a_sast_command_without_a_language_default_is_used(tmp_path: Path) -> None:
    commands = stage_commands(service(sast={"command": "semgrep --sarif -o s.sarif ."}), tmp_path)
    assert commands.sast == ["semgrep", "--sarif", "-o", "s.sarif", "."]
    assert commands.language == "unknown" and commands.build is None


@pytest.mark.parametrize(
    ("settings", "stages", "expected"),
    [
        ({"runner": "host"}, ["test"], ("host", None)),
        ({"test_target": "ci"}, ["ci", "test"], ("target", "ci")),
        ({"stage_image": "python:3.12-slim"}, ["test"], ("setup", None)),
        ({}, ["base", "test"], ("target", "test")),
        ({}, ["base"], ("image", None)),
    ],
)
def test_where_the_stages_run(
    settings: dict[str, object], stages: list[str], expected: tuple[str, str | None]
) -> None:
    assert stage_environment(service(**settings), stages) == expected
