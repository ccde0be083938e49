"""Stage commands (compile, unit tests, SAST) run in containers instead of on the worker.

Why containers: a service's stages need *its* dependencies and tools (its Python version, its
test runner, its analysers), not the worker's interpreter; and the commands come from the
repository being built, so they must not reach what the worker holds: its credentials and
environment, `RELAY_HOME` (the ledger, approval tokens) or the Docker socket. A stage
container gets a throwaway copy of the service's directory, only the environment it is given,
no network unless asked, and is removed afterwards; the reports it writes are copied back.

- `container`: run one command in a container of a stage image (`run_in_container`).
- `image`: prepare the stage image, once: a target of the service's Dockerfile
  (`target_image`) or a base image plus a setup command (`setup_image`), cached by tag.
"""

from __future__ import annotations

from relay.stages.container import (
    OUTPUT_LIMIT,
    REPORT_DIR,
    SOURCE_DIR,
    StageRun,
    missing_tool,
    run_in_container,
)
from relay.stages.image import (
    BUILT_SECONDS_LABEL,
    StageImage,
    setup_image,
    setup_inputs,
    setup_tag,
    target_image,
)

__all__ = [
    "BUILT_SECONDS_LABEL",
    "OUTPUT_LIMIT",
    "REPORT_DIR",
    "SOURCE_DIR",
    "StageImage",
    "StageRun",
    "missing_tool",
    "run_in_container",
    "setup_image",
    "setup_inputs",
    "setup_tag",
    "target_image",
]
