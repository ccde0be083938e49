"""The image key: everything a service's image is built from, as one hash.

An image is built once per key and reused for every commit with the same key (tag
`key_tag(key)`). The key is the service's git tree hash, the digests of the base images its
Dockerfile starts FROM, its build arguments and its build target. So a base image patched under
the same tag (`python:3.11-slim`, new content) rebuilds every service on it, and a commit that
changes none of these reuses the image.

`base_image_digest` asks the Docker engine what it would build FROM: the image it has under
that reference, else the registry's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from relay.dockerfile import base_images
from relay.errors import StageFailed, TransientError

__all__ = [
    "PROVENANCE_BUILD_ARGS",
    "base_digests",
    "base_image_digest",
    "image_key",
    "key_tag",
]

PROVENANCE_BUILD_ARGS = frozenset({"GIT_SHA"})
"""Build arguments passed to the build but left out of the key (see `image_key`)."""

_PINNED = re.compile(r"@(sha256:[0-9a-f]{64})$")
_TRANSIENT = (
    "connection refused",
    "connection reset",
    "timeout",
    "timed out",
    "temporary failure",
    "too many requests",
    "toomanyrequests",
    "service unavailable",
    "bad gateway",
    "unexpected eof",
)


def image_key(
    tree: str,
    base_digests: Mapping[str, str],
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> str:
    """The image's key: 64 hex digits, the sha256 of a canonical JSON (sorted keys) of the
    parts below. Two builds with the same key make the same image; that is why each part is in.

    * `tree`: the git tree hash of the service's directory, that is its source and Dockerfile.
    * `base_digests`: base image reference -> digest (`base_digests`). The tag alone says
      nothing: `python:3.11-slim` is republished with security fixes, and the services built
      on it must then be rebuilt, though their tree did not change.
    * `build_args`: they change what the Dockerfile does (`ARG PYTHON_VERSION`, feature
      flags). Those in `PROVENANCE_BUILD_ARGS` are left out: `GIT_SHA` changes with every
      commit, so with it in no image would ever be reused. It is provenance (the image's
      labels record it too), passed to the build but not part of what the image is built
      from. The same build arguments can be passed here and to the build.
    * `target`: the stage built (`--target`); another stage is another image. Only when one is
      given: None and "" build the last stage, as Docker does.

    Args:
        tree: The service's git tree hash.
        base_digests: Each base image reference with its digest.
        build_args: The build arguments of the build.
        target: The build target, if any.

    Returns:
        The key, 64 lower-case hex digits.
    """
    parts: dict[str, object] = {
        "tree": tree,
        "base_images": dict(base_digests),
        "build_args": {
            name: value
            for name, value in (build_args or {}).items()
            if name not in PROVENANCE_BUILD_ARGS
        },
    }
    if target:
        parts["target"] = target
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_tag(key: str) -> str:
    """The registry tag of the image built for `key`: `key-` and its first 40 hex digits."""
    return f"key-{key[:40]}"


def base_image_digest(client: docker.DockerClient, reference: str) -> str:
    """The digest of the image the engine would build FROM `reference` (builds run with
    `pull=False`, so a local image wins over the registry's).

    * A reference pinned by digest (`python@sha256:...`) is its own answer.
    * An image the engine has: its registry digest for that repository (`RepoDigests`), which is
      what another engine that has to ask the registry gets too; else (built or imported
      locally, never pushed) its image ID, the digest of its config, so a rebuild under the same
      tag has a new one.
    * Else the registry's manifest digest for the reference, asked through the engine (with the
      engine's registry configuration and credentials).

    Raises:
        StageFailed: the image is neither on the engine nor in its registry.
        TransientError: the engine or the registry could not be reached; worth retrying.
    """
    pinned = _PINNED.search(reference)
    if pinned:
        return pinned[1]
    try:
        image = client.images.get(reference)
    except ImageNotFound:
        return _registry_digest(client, reference)
    except APIError as exc:
        raise _api_error(exc, f"inspecting base image {reference!r} on the engine") from exc
    except OSError as exc:  # requests' ConnectionError and Timeout: the engine is unreachable
        raise TransientError(f"Docker engine unreachable inspecting {reference!r}: {exc}") from exc
    repository = _repository(reference)
    digests = sorted(
        entry.rpartition("@")[2]
        for entry in image.attrs.get("RepoDigests") or []
        if _familiar(entry.rpartition("@")[0]) == repository
    )
    return digests[0] if digests else str(image.id)


def base_digests(
    client: docker.DockerClient,
    dockerfile_text: str,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    *,
    label: str = "Dockerfile",
) -> dict[str, str]:
    """Reference -> digest for every base image of the Dockerfile (`relay.dockerfile.base_images`
    with the same arguments), ready for `image_key`.

    Raises:
        TerminalError: a FROM cannot be resolved, or `target` is not a stage.
        StageFailed: base images that exist nowhere, all of them named in one error.
        TransientError: the engine or a registry could not be reached.
    """
    digests: dict[str, str] = {}
    missing: list[str] = []
    for reference in base_images(dockerfile_text, build_args, target, label=label):
        try:
            digests[reference] = base_image_digest(client, reference)
        except StageFailed as exc:
            missing.append(str(exc))
    if missing:
        raise StageFailed(f"{label}: " + "\n".join(missing))
    return digests


def _registry_digest(client: docker.DockerClient, reference: str) -> str:
    try:
        return str(client.images.get_registry_data(reference).id)
    except NotFound as exc:
        raise StageFailed(_nowhere(reference, exc)) from exc
    except APIError as exc:
        if _transient(exc):
            raise TransientError(
                f"registry of base image {reference!r} unreachable: {exc.explanation}"
            ) from exc
        raise StageFailed(_nowhere(reference, exc)) from exc
    except OSError as exc:
        raise TransientError(f"Docker engine unreachable looking up {reference!r}: {exc}") from exc


def _nowhere(reference: str, exc: APIError) -> str:
    return (
        f"base image {reference!r} is neither on the Docker engine nor in its registry "
        f"({exc.explanation}); build, pull or push it, or correct the FROM or the build_args "
        "that name it"
    )


def _api_error(exc: APIError, doing: str) -> TransientError | StageFailed:
    if _transient(exc):
        return TransientError(f"{doing}: {exc.explanation}")
    return StageFailed(f"{doing}: {exc.explanation}")


def _transient(exc: APIError) -> bool:
    if exc.status_code in {429, 502, 503, 504}:
        return True
    text = str(exc.explanation or "").lower()
    return any(marker in text for marker in _TRANSIENT)


def _repository(reference: str) -> str:
    """`reference` without its tag or digest, as Docker writes it in RepoDigests."""
    name = reference.partition("@")[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    return _familiar(name)


def _familiar(repository: str) -> str:
    """Docker Hub's short form: `docker.io/library/python` is `python`."""
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix) :]
            break
    return repository.removeprefix("library/") if repository.count("/") == 1 else repository
