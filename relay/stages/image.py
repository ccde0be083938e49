"""Stage environments: the images that stage commands run in, built once and then reused.

Two kinds, both tagged locally and found again by tag, so a second pipeline run builds nothing:

- *A target of the service's Dockerfile* (`target_image`): a `test` stage next to the runtime
  one has the service's dependencies plus its test tools, as the service's authors declared
  them.
- *A base image plus a setup command* (`setup_image`), e.g. `pip install -r requirements.txt`:
  the setup runs once in a build, and its layer is the cache. The tag is a hash of what the
  setup depends on (`setup_tag`): the base image's id, the command and the content of the files
  it reads (`setup_inputs`); when any of them changes, the tag does, and the setup runs again.

Each image carries how long its build took (`BUILT_SECONDS_LABEL`), so that a cached run can
still say what the cache saved.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from relay.dockerfile import stage_names
from relay.errors import StageFailed, TerminalError, TransientError
from relay.stages.container import SOURCE_DIR

__all__ = [
    "BUILT_SECONDS_LABEL",
    "StageImage",
    "setup_image",
    "setup_inputs",
    "setup_tag",
    "target_image",
]

BUILT_SECONDS_LABEL = "org.relay.built-seconds"
# Where the generated setup Dockerfile and the setup's input files sit in its build context;
# inputs in their own folder so that no input (even one called Dockerfile) collides with it.
_SETUP_DOCKERFILE = "Dockerfile"
_SETUP_INPUTS = "inputs"
# pip's short options that take a file and may be glued to it: -rrequirements.txt
_GLUED_FILE_OPTIONS = ("-r", "-c")


@dataclass(frozen=True)
class StageImage:
    """A stage environment, ready on the engine.

    Attributes:
        image: Its local tag.
        cached: True when it already existed and nothing was built or installed now.
        seconds: What preparing it took now (a look-up when cached).
        built_seconds: What building it took when it was built (from `BUILT_SECONDS_LABEL`;
            0.0 when the image does not carry the label), for "with and without the cache".
    """

    image: str
    cached: bool
    seconds: float
    built_seconds: float


# --- a target of the service's Dockerfile -------------------------------------------------------


def target_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    target: str,
    tag: str,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> StageImage:
    """The `target` stage of `context`'s `dockerfile` as `tag`, built only when `tag` is absent.

    Raises:
        TerminalError: There is no `dockerfile` in `context`.
        StageFailed: The Dockerfile has no such stage (the message lists those it has), or the
            build failed (the message ends with the build log's tail).
        TransientError: The Docker engine failed.
    """
    started = time.monotonic()
    cached = _cached(client, tag, started)
    if cached is not None:
        return cached
    _check_target(context, dockerfile, target)
    built, seconds = _build(
        client,
        f"target {target!r} of {context / dockerfile}",
        path=str(context),
        dockerfile=dockerfile,
        target=target,
        buildargs=dict(build_args or {}),
    )
    _label(client, built, tag, seconds, labels)
    return StageImage(tag, False, time.monotonic() - started, seconds)


def _check_target(context: Path, dockerfile: str, target: str) -> None:
    path = context / dockerfile
    if not path.is_file():
        raise TerminalError(f"there is no Dockerfile at {path}; check the service's dockerfile")
    names = stage_names(path.read_text(errors="replace"))  # in lower case, as Docker compares
    if target.lower() not in names:
        raise StageFailed(
            f"{path} has no stage {target!r}; its stages are: {', '.join(names) or 'none'}. "
            f"Add `FROM <image> AS {target}` to it or name one of these"
        )


# --- a base image plus a setup command ----------------------------------------------------------


def setup_image(
    client: docker.DockerClient,
    base_image: str,
    setup: Sequence[str] | None,
    inputs: Mapping[str, bytes],
    tag: str,
) -> StageImage:
    """`base_image` with `setup` run once in `SOURCE_DIR` on `inputs`, as `tag`.

    The setup runs in a build with host networking (it installs packages); its layer is what a
    later call with the same `tag` reuses without running anything. Without a setup command
    the image is the base image with its WORKDIR set, labelled.

    Raises:
        TerminalError: An input path that is absolute or leaves the directory.
        StageFailed: The base image is not on the engine, or the setup failed (the message names
            the command and ends with its output's tail).
        TransientError: The Docker engine failed.
    """
    started = time.monotonic()
    cached = _cached(client, tag, started)
    if cached is not None:
        return cached
    _check_base(client, base_image)
    what = f"setup {' '.join(setup)!r} on {base_image}" if setup else f"image of {base_image}"
    built, seconds = _build(
        client,
        what,
        fileobj=_setup_context(base_image, setup, inputs),
        custom_context=True,
        dockerfile=_SETUP_DOCKERFILE,
    )
    _label(client, built, tag, seconds, None)
    return StageImage(tag, False, time.monotonic() - started, seconds)


def setup_inputs(
    setup: Sequence[str], directory: Path, extra: Sequence[str] = ()
) -> dict[str, bytes]:
    """The files `setup` reads, by content, keyed by POSIX path relative to `directory`.

    A file is an input when an argv token names it (also `--requirement=x`, and `-rx`/`-cx`),
    it is a regular file once symlinks are resolved, and it stays inside `directory`. Files that
    the named ones refer to in turn (a `-r` inside requirements.txt) are not seen: list those in
    `extra`.

    Raises:
        TerminalError: A path of `extra` is not a file inside `directory` (all of them named).
    """
    root = _root(directory)
    found = {}
    for token in setup:
        for candidate in _file_candidates(token):
            key = _input_key(root, candidate)
            if key is not None:
                found[key] = (root / key).read_bytes()
    extra_keys = {path: _input_key(root, path) for path in extra}
    missing = [path for path, key in extra_keys.items() if key is None]
    if missing:
        raise TerminalError(
            f"setup inputs {', '.join(map(repr, missing))} are not files inside {directory}; "
            "give paths relative to the service's directory"
        )
    found.update({key: (root / key).read_bytes() for key in extra_keys.values() if key})
    return found


def setup_tag(
    prefix: str, base_image_id: str, setup: Sequence[str] | None, inputs: Mapping[str, bytes]
) -> str:
    """`<prefix>:setup-<24 hex>`, a hash of everything the setup's result depends on."""
    facts = {
        "base": base_image_id,
        "setup": list(setup) if setup is not None else None,
        "inputs": [[key, hashlib.sha256(inputs[key]).hexdigest()] for key in sorted(inputs)],
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return f"{prefix}:setup-{digest[:24]}"


def _file_candidates(token: str) -> list[str]:
    candidates = [token]
    if "=" in token:
        candidates.append(token.split("=", 1)[1])
    if token.startswith(_GLUED_FILE_OPTIONS) and len(token) > 2:
        candidates.append(token[2:])
    return candidates


def _root(directory: Path) -> Path:
    return Path(os.path.normpath(directory.absolute()))


def _input_key(root: Path, candidate: str) -> str | None:
    """`candidate`'s path relative to `root` when it is a regular file in it, else None.

    The key is the path as the command names it (the setup reads it there), checked lexically
    and once more with symlinks resolved, so that a link cannot bring in a file from outside.
    """
    if not candidate:
        return None
    named = Path(os.path.normpath(root / candidate))
    try:
        resolved = named.resolve()
        inside = named.is_relative_to(root) and resolved.is_relative_to(root.resolve())
        if not inside or named == root or not resolved.is_file():
            return None
    except (OSError, ValueError):  # not a path at all: a `-c` script, a NUL byte
        return None
    return named.relative_to(root).as_posix()


def _setup_context(
    base_image: str, setup: Sequence[str] | None, inputs: Mapping[str, bytes]
) -> io.BytesIO:
    """An in-memory build context: the generated Dockerfile and, under `inputs/`, the inputs.

    Without a setup command (None or empty) there is nothing to copy or run.
    """
    lines = [f"FROM {base_image}", f"WORKDIR {SOURCE_DIR}"]
    files: dict[str, bytes] = {}
    if setup:
        _check_input_paths(inputs)
        files = {f"{_SETUP_INPUTS}/{key}": content for key, content in inputs.items()}
        if files:
            lines.append(f"COPY {json.dumps([_SETUP_INPUTS + '/', SOURCE_DIR + '/'])}")
        lines.append(f"RUN {json.dumps(list(setup))}")
    files[_SETUP_DOCKERFILE] = ("\n".join(lines) + "\n").encode()
    return _tar(files)


def _check_input_paths(inputs: Mapping[str, bytes]) -> None:
    bad = [
        key
        for key in inputs
        if PurePosixPath(key).is_absolute() or ".." in PurePosixPath(key).parts or not key
    ]
    if bad:
        raise TerminalError(
            f"setup inputs {', '.join(map(repr, bad))} are not relative paths inside the "
            "service's directory; use setup_inputs() to find them"
        )


def _tar(files: Mapping[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            entry.mode = 0o644
            entry.mtime = 0  # the same inputs give the same context
            tar.addfile(entry, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def _check_base(client: docker.DockerClient, base_image: str) -> None:
    """The legacy builder pulls a missing FROM image even with pull=False; refuse instead."""
    try:
        client.images.get(base_image)
    except ImageNotFound as exc:
        raise StageFailed(
            f"the base image {base_image!r} of the stage environment does not exist on the "
            "Docker engine; pull or build it first"
        ) from exc
    except APIError as exc:
        raise TransientError(f"cannot look up {base_image}: {exc.explanation}") from exc


# --- building, labelling, finding again ---------------------------------------------------------


def _cached(client: docker.DockerClient, tag: str, started: float) -> StageImage | None:
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        return None
    except APIError as exc:
        raise TransientError(f"cannot look up {tag}: {exc.explanation}") from exc
    built = _built_seconds(image.labels or {})
    return StageImage(tag, True, time.monotonic() - started, built)


def _built_seconds(labels: Mapping[str, str]) -> float:
    try:
        return float(labels.get(BUILT_SECONDS_LABEL, 0.0))
    except ValueError:
        return 0.0


def _build(client: docker.DockerClient, what: str, **options: Any) -> tuple[str, float]:
    """Build without a tag; return the image id and how long the build took."""
    started = time.monotonic()
    try:
        image, _ = client.images.build(
            network_mode="host", pull=False, rm=True, forcerm=True, **options
        )
    except BuildError as exc:
        lines = [str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log]
        tail = "".join(lines)[-3000:]
        raise StageFailed(f"docker build of the {what} failed: {exc.msg}\n{tail}") from exc
    except APIError as exc:
        raise StageFailed(f"docker build of the {what} failed: {exc.explanation}") from exc
    return str(image.id), round(time.monotonic() - started, 3)


def _label(
    client: docker.DockerClient,
    image_id: str,
    tag: str,
    seconds: float,
    labels: Mapping[str, str] | None,
) -> None:
    """Tag `image_id` as `tag`, with the build's duration among its labels.

    The duration is known only once the build is over, so it goes into a metadata-only image on
    top (`FROM <id>` with labels), which is also what gets the tag: a tag that exists always
    has its label, even if this step was interrupted.
    """
    context = _tar({"Dockerfile": f"FROM {image_id}\n".encode()})
    all_labels = {**(labels or {}), BUILT_SECONDS_LABEL: f"{seconds:.3f}"}
    try:
        client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            labels=all_labels,
            network_mode="host",
            pull=False,
            rm=True,
            forcerm=True,
        )
    except (BuildError, APIError) as exc:
        raise TransientError(f"cannot label {image_id} as {tag}: {exc}") from exc
