"""Which stage commands a service runs, from what it has: its `relay.yaml` entry, else defaults
that fit its language, never Python's defaults for a service that has no Python.

A command written in `relay.yaml` is used as it is; `null` means the stage does not exist. An
unwritten one gets its language's default, and a default that needs a folder (`tests/unit`)
only where that folder exists. Every stage that does not run says why, for the pipeline's
summary.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from relay.manifest import Service

__all__ = [
    "Language",
    "StageCommands",
    "StageEnvironment",
    "language_of",
    "stage_commands",
    "stage_environment",
]

Language = Literal["python", "go", "node", "unknown"]

# What tells a service's language, in order: the first that is there wins.
_MARKERS: tuple[tuple[str, Language], ...] = (
    ("go.mod", "go"),
    ("package.json", "node"),
    ("pyproject.toml", "python"),
    ("requirements.txt", "python"),
    ("setup.py", "python"),
)

# language -> stage -> (command, the folder it needs or None)
_DEFAULTS: dict[Language, dict[str, tuple[str, str | None]]] = {
    "python": {
        "build": ("python -m compileall -q .", None),
        "unit_tests": ("python -m pytest -q tests/unit", "tests/unit"),
        "integration_tests": ("python -m pytest -q tests/integration", "tests/integration"),
        "sast": ("bandit -r . -f json -x ./tests", None),
    },
    "go": {
        "build": ("go vet ./...", None),
        "unit_tests": ("go test ./...", None),
    },
    "node": {
        "unit_tests": ("npm test", None),
    },
}
STAGES = ("build", "unit_tests", "integration_tests", "sast")


StageEnvironment = Literal["host", "target", "setup", "image"]


def stage_environment(
    service: Service, dockerfile_stages: list[str]
) -> tuple[StageEnvironment, str | None]:
    """Where the service's stage commands run, and the Dockerfile target when it is one:
    the worker (`runner: host`); its `test_target`, or the stage named `test` when the
    Dockerfile has one; its `stage_image` (with `setup`); else its own image."""
    if service.runner == "host":
        return "host", None
    if service.test_target is not None:
        return "target", service.test_target
    if service.stage_image is not None:
        return "setup", None
    if "test" in dockerfile_stages:
        return "target", "test"
    return "image", None


def language_of(directory: Path) -> Language:
    """A service's language, from its files: go.mod, package.json, pyproject.toml,
    requirements.txt, setup.py, else any `.py` file at its top."""
    for marker, language in _MARKERS:
        if (directory / marker).is_file():
            return language
    if any(directory.glob("*.py")):
        return "python"
    return "unknown"


@dataclass(frozen=True)
class StageCommands:
    """The commands a service's stages run; None: the stage does not run, `skipped` says why."""

    language: Language
    build: list[str] | None
    unit_tests: list[str] | None
    integration_tests: list[str] | None
    sast: list[str] | None
    skipped: dict[str, str] = field(default_factory=dict)
    # The SAST command is Relay's default (bandit for Python), not one relay.yaml gives.
    sast_by_relay: bool = False


def stage_commands(service: Service, directory: Path) -> StageCommands:
    """The service's stage commands, with its language's defaults where `relay.yaml` is silent."""
    language = language_of(directory)
    chosen: dict[str, list[str] | None] = {}
    skipped: dict[str, str] = {}
    defaults: set[str] = set()
    for stage in STAGES:
        written, command = _written(service, stage)
        if written:
            chosen[stage] = command
            if command is None:
                skipped[stage] = f"{'sast' if stage == 'sast' else stage}: null in relay.yaml"
            continue
        chosen[stage], why = _default(language, stage, directory)
        if why:
            skipped[stage] = why
        else:
            defaults.add(stage)
    return StageCommands(
        language=language,
        build=chosen["build"],
        unit_tests=chosen["unit_tests"],
        integration_tests=chosen["integration_tests"],
        sast=chosen["sast"],
        skipped=skipped,
        sast_by_relay="sast" in defaults,
    )


def _written(service: Service, stage: str) -> tuple[bool, list[str] | None]:
    """Whether relay.yaml sets the stage's command, and to what (None: null)."""
    if stage == "sast":
        if "sast" in service.model_fields_set and service.sast is None:
            return True, None
        if service.sast is not None and "command" in service.sast.model_fields_set:
            return True, service.sast.command
        return False, None
    if stage in service.model_fields_set:
        command: list[str] | None = getattr(service, stage)
        return True, command
    return False, None


def _default(language: Language, stage: str, directory: Path) -> tuple[list[str] | None, str]:
    default = _DEFAULTS.get(language, {}).get(stage)
    if default is None:
        kind = "a service of no known language" if language == "unknown" else f"{language}"
        return None, f"no default for {kind}; set {_setting(stage)} in relay.yaml to run one"
    command, folder = default
    if folder is not None and not (directory / folder).is_dir():
        return None, f"no {folder} folder (the default {command!r} would find no tests)"
    return shlex.split(command), ""


def _setting(stage: str) -> str:
    return "sast.command" if stage == "sast" else stage
