"""Registering Relay's Prefect deployments (prefect.yaml) non-interactively."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relay.errors import RelayError

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_NIGHTLY_CRON = "0 2 * * *"


def register_deployments(
    nightly_repository: str, nightly_cron: str | None = None, names: list[str] | None = None
) -> str:
    """`prefect deploy --all` for prefect.yaml (or only the deployments `names`), with the
    values it reads from the environment."""
    env = {
        **os.environ,
        "RELAY_PROJECT_DIR": str(PROJECT),
        "RELAY_NIGHTLY_REPOSITORY": nightly_repository,
        "RELAY_NIGHTLY_CRON": nightly_cron
        or os.environ.get("RELAY_NIGHTLY_CRON", DEFAULT_NIGHTLY_CRON),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            *([f"--name={n}" for n in names] if names else ["--all"]),
        ],  # fmt: skip
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RelayError(f"prefect deploy failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout
