"""Build and push service images with the Docker engine (docker SDK).

Builds run with host networking because the engine here has no bridge, and with `pull=False`
so a base image that exists locally (such as the stack's stand-in for python:3.11-slim) is used
as it is. Every image carries labels that say where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError

from relay.errors import StageFailed, TransientError

LABEL_PREFIX = "org.relay"


@dataclass(frozen=True)
class BuiltImage:
    image_id: str
    tag: str
    log_tail: str


def image_labels(service: str, commit: str, tree: str) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}.service": service,
        f"{LABEL_PREFIX}.commit": commit,
        f"{LABEL_PREFIX}.tree": tree,
        "org.opencontainers.image.revision": commit,
    }


def build_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    labels: Mapping[str, str],
    build_args: Mapping[str, str],
) -> BuiltImage:
    """Build `context` into `tag`; a failed build is a StageFailed with the build log's tail."""
    try:
        image, logs = client.images.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            labels=dict(labels),
            buildargs=dict(build_args),
            network_mode="host",
            pull=False,
            rm=True,
            forcerm=True,
        )
    except BuildError as exc:
        lines = [_log_text(chunk, "stream", "error") for chunk in exc.build_log]
        tail = "".join(lines)[-3000:]
        raise StageFailed(f"docker build of {context} failed: {exc.msg}\n{tail}") from exc
    except APIError as exc:
        raise StageFailed(f"docker build of {context} failed: {exc.explanation}") from exc
    lines = [_log_text(chunk, "stream") for chunk in logs]
    return BuiltImage(image_id=str(image.id), tag=tag, log_tail="".join(lines)[-2000:])


def _log_text(chunk: object, *keys: str) -> str:
    """The text of one chunk of the engine's build log (a JSON object), by the first key set."""
    if not isinstance(chunk, dict):
        return ""
    return next((str(chunk[key]) for key in keys if key in chunk), "")


def push_image(
    client: docker.DockerClient,
    repository: str,
    tag: str,
    auth_config: Mapping[str, str] | None = None,
) -> str:
    """Push `repository:tag` and return the digest the registry reported.

    `auth_config` (`{"username", "password"}`) logs in for this push only, as ECR needs: its
    token expires after 12 hours, so it is never stored in the engine's config.
    """
    digest = ""
    auth = dict(auth_config) if auth_config else None
    try:
        events = client.images.push(repository, tag=tag, stream=True, decode=True, auth_config=auth)
        for event in events:
            if "error" in event:
                raise TransientError(f"push of {repository}:{tag} failed: {event['error']}")
            aux = event.get("aux") or {}
            digest = aux.get("Digest", digest)
    except APIError as exc:
        raise TransientError(f"push of {repository}:{tag} failed: {exc.explanation}") from exc
    if not digest:
        raise TransientError(f"push of {repository}:{tag} reported no digest")
    return digest
