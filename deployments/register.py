"""Registering Relay's Prefect deployments (prefect.yaml) non-interactively."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from relay.errors import RelayError

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
IMAGE_PROJECT_DIR = "/opt/relay"  # where the worker image (Dockerfile) keeps Relay's code


def on_pool(config: dict[str, Any], pool: str | None, image: str | None) -> dict[str, Any]:
    """prefect.yaml's deployments moved to work pool `pool`, each with job image `image`: what
    `relay deploy --pool relay-docker --image registry/relay-worker:1.0` registers. (`prefect
    deploy --all` applies no `--pool` or `--job-variable` to the deployments of a file.)"""
    for deployment in config.get("deployments") or []:
        work_pool = dict(deployment.get("work_pool") or {})
        if pool:
            work_pool["name"] = pool
        if image:
            work_pool["job_variables"] = {**(work_pool.get("job_variables") or {}), "image": image}
        deployment["work_pool"] = work_pool
    return config


def register_deployments(
    nightly_repository: str,
    nightly_cron: str | None = None,
    names: list[str] | None = None,
    pool: str | None = None,
    image: str | None = None,
) -> str:
    """`prefect deploy --all` for prefect.yaml (or only the deployments `names`), with the
    values it reads from the environment; on work pool `pool` and with job image `image` (Relay's
    worker image, whose code is in /opt/relay) when given."""
    prefect_file = PROJECT / "prefect.yaml"
    moved = None
    if pool or image:
        config = on_pool(yaml.safe_load(prefect_file.read_text()), pool, image)
        moved = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed below
            "w", suffix=".yaml", prefix=".prefect-", dir=PROJECT, delete=False
        )
        with moved:
            yaml.safe_dump(config, moved, sort_keys=False)
        prefect_file = Path(moved.name)
    try:
        return prefect_deploy(prefect_file, nightly_repository, nightly_cron, names, image)
    finally:
        if moved is not None:
            Path(moved.name).unlink(missing_ok=True)


def prefect_deploy(
    prefect_file: Path,
    nightly_repository: str,
    nightly_cron: str | None,
    names: list[str] | None,
    image: str | None,
) -> str:
    """`prefect deploy` of `prefect_file` in Relay's project directory; flows start from the
    worker image's /opt/relay when the deployments have an `image`, else from this checkout."""
    env = {
        **os.environ,
        "RELAY_PROJECT_DIR": IMAGE_PROJECT_DIR if image else str(PROJECT),
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
            f"--prefect-file={prefect_file}",
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
