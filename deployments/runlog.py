"""Prefect's own log lines of a `relay` command, in a file instead of the terminal.

A release prints hundreds of lines of Prefect log (every task run's start and end, a traceback
per failure); on a terminal they bury the progress view and the one message that matters. The
command keeps them, whole, in a file it names, and `--verbose` shows them as before. The Prefect
UI still gets every line (the `api` handler is untouched).

This uses Prefect's own mechanism, a logging configuration file (`PREFECT_LOGGING_SETTINGS_PATH`):
Prefect's default configuration with its `console` handler writing to the file. Prefect reads
it when it is imported, so `to_file` runs before anything imports Prefect.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from relay.settings import relay_home

KEEP = 50  # files of earlier commands kept


def to_file(command: str) -> Path:
    """Point this process's Prefect logging at a new file under `$RELAY_HOME/run-logs`; its path."""
    directory = relay_home() / "run-logs"  # not logs/: the local stack keeps its own there
    directory.mkdir(parents=True, exist_ok=True)
    _prune(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = directory / f"{command}-{stamp}-{os.getpid()}.log"
    settings = directory / f".logging-{os.getpid()}.yml"
    settings.write_text(yaml.safe_dump(_config(log)), encoding="utf-8")
    os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(settings)
    return log


def _config(log: Path) -> dict[str, Any]:
    """Prefect's default configuration, the console handler replaced by the file. The default's
    `${PREFECT_...}` templates stay as they are: Prefect fills them in when it reads the file."""
    default = (_prefect_dir() / "logging" / "logging.yml").read_text(encoding="utf-8")
    config: dict[str, Any] = yaml.safe_load(default)
    config["handlers"]["console"] = {
        "level": 0,
        "class": "logging.FileHandler",
        "formatter": "standard",
        "filename": str(log),
        "encoding": "utf-8",
    }
    return config


def _prefect_dir() -> Path:
    """Prefect's package directory, found without importing Prefect (that would set up its
    logging before the file is named)."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Prefect is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


def _prune(directory: Path) -> None:
    logs = sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-KEEP]:
        old.unlink(missing_ok=True)
    for stale in directory.glob(".logging-*.yml"):
        pid = stale.stem.removeprefix(".logging-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)
