"""The image key: pure tests of the hash, and the base image digests against the stack's real
Docker engine and registry (images built from in-memory contexts, all removed afterwards)."""

from __future__ import annotations

import io
import os
import re
import socket
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field

import docker
import httpx
import pytest
from docker.errors import APIError

from relay.errors import StageFailed, TerminalError, TransientError
from relay.image_key import base_digests, base_image_digest, image_key, key_tag
from relay.images import push_image

TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
BASES = {"python:3.11-slim": "sha256:" + "a" * 64}

# --- the key (pure) ---------------------------------------------------------------------------


def test_the_same_parts_give_the_same_key() -> None:
    key = image_key(TREE, BASES, {"PY": "3.11"}, "final")

    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key == image_key(TREE, dict(BASES), {"PY": "3.11"}, "final")


def test_order_does_not_matter() -> None:
    two = {"python:3.11-slim": "sha256:" + "a" * 64, "golang:1.22": "sha256:" + "b" * 64}
    reversed_two = dict(reversed(list(two.items())))

    assert image_key(TREE, two, {"A": "1", "B": "2"}) == image_key(
        TREE, reversed_two, {"B": "2", "A": "1"}
    )


def test_no_build_args_and_no_target_are_the_empty_ones() -> None:
    assert (
        image_key(TREE, BASES)
        == image_key(TREE, BASES, {}, None)
        == image_key(TREE, BASES, None, "")
    )


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"tree": "0" * 40}, id="tree"),
        pytest.param({"base_digests": {"python:3.11-slim": "sha256:" + "c" * 64}}, id="digest"),
        pytest.param({"base_digests": {"python:3.12-slim": BASES["python:3.11-slim"]}}, id="ref"),
        pytest.param({"base_digests": {**BASES, "busybox:1.36": "sha256:" + "d" * 64}}, id="more"),
        pytest.param({"base_digests": {}}, id="no-base"),
        pytest.param({"build_args": {"PY": "3.12"}}, id="build-arg-value"),
        pytest.param({"build_args": {"PY": "3.11", "DEBUG": "1"}}, id="build-arg-added"),
        pytest.param({"build_args": {}}, id="build-arg-removed"),
        pytest.param({"target": "test"}, id="target"),
        pytest.param({"target": None}, id="no-target"),
    ],
)
def test_each_part_changes_the_key(changed: dict[str, object]) -> None:
    parts: dict[str, object] = {
        "tree": TREE,
        "base_digests": BASES,
        "build_args": {"PY": "3.11"},
        "target": "final",
    }

    assert image_key(**{**parts, **changed}) != image_key(**parts)  # type: ignore[arg-type]


def test_git_sha_is_provenance_not_part_of_the_key() -> None:
    """Every commit has another GIT_SHA: with it in the key no image would ever be reused."""
    key = image_key(TREE, BASES, {"PY": "3.11"})

    assert image_key(TREE, BASES, {"PY": "3.11", "GIT_SHA": "c0ffee"}) == key
    assert image_key(TREE, BASES, {"PY": "3.11", "GIT_SHA": "decade"}) == key


def test_key_tag() -> None:
    key = image_key(TREE, BASES)

    assert key_tag(key) == f"key-{key[:40]}"
    assert re.fullmatch(r"key-[0-9a-f]{40}", key_tag(key))


def test_an_unreachable_engine_is_transient() -> None:
    unreachable = docker.DockerClient(
        base_url="unix:///tmp/relay-no-such-engine.sock", version="1.41", timeout=5
    )
    with closing(unreachable), pytest.raises(TransientError, match="engine unreachable"):
        base_image_digest(unreachable, "python:3.11-slim")


def test_a_digest_pinned_reference_is_its_own_digest() -> None:
    """No engine is asked: the digest already says which content the build starts from."""
    unreachable = docker.DockerClient(
        base_url="unix:///tmp/relay-no-such-engine.sock", version="1.41", timeout=5
    )
    digest = "sha256:" + "e" * 64
    with closing(unreachable):
        assert base_image_digest(unreachable, f"python:3.11-slim@{digest}") == digest


# --- base image digests, against the real engine and registry --------------------------------


@dataclass
class Made:
    """What a test created, removed afterwards: local images (by ID, so that every tag and
    every image left untagged by a rebuild goes) and manifests pushed to the registry."""

    client: docker.DockerClient
    images: list[str] = field(default_factory=list)
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)

    def build(self, tag: str, content: str) -> str:
        """Build `FROM python:3.11-slim` plus a file holding `content` as `tag`; its ID."""
        dockerfile = "FROM python:3.11-slim\nCOPY marker /marker\n"
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, text in {"Dockerfile": dockerfile, "marker": content}.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        image, _ = self.client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            pull=False,
            network_mode="host",
            rm=True,
            forcerm=True,
        )
        self.images.append(str(image.id))
        return str(image.id)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=60)) as c:
        yield c


@pytest.fixture
def made(client: docker.DockerClient) -> Iterator[Made]:
    made = Made(client)
    try:
        yield made
    finally:
        for image_id in reversed(made.images):
            with suppress(APIError):  # already gone
                client.images.remove(image_id, force=True)
        with httpx.Client(base_url=f"http://{os.environ['RELAY_REGISTRY']}", timeout=10) as http:
            for repository, digest in made.manifests:
                http.delete(f"/v2/{repository}/manifests/{digest}")


@pytest.fixture
def name() -> str:
    return f"relay-test/keybase-{uuid.uuid4().hex[:12]}"


@pytest.mark.stack
def test_a_rebuilt_base_under_the_same_tag_changes_the_digest_and_the_key(
    client: docker.DockerClient, made: Made, name: str
) -> None:
    tag = f"{name}:1"
    first = made.build(tag, "one")

    digest = base_image_digest(client, tag)
    assert digest == first  # built here, never pushed: the image ID
    assert base_image_digest(client, tag) == digest  # asked again: the same
    assert made.build(tag, "one") == first  # unchanged content: the same image, the same key

    second = made.build(tag, "two")  # patched: same tag, new content

    assert second != first
    assert base_image_digest(client, tag) == second
    assert image_key(TREE, {tag: second}) != image_key(TREE, {tag: digest})


@pytest.mark.stack
def test_base_digests_resolves_the_dockerfile_with_its_build_args(
    client: docker.DockerClient, made: Made, name: str
) -> None:
    image_id = made.build(f"{name}:1", "one")
    dockerfile = (
        "ARG BASE_IMAGE=python:3.11-slim\n"
        "FROM ${BASE_IMAGE} AS app\n"
        "FROM app AS test\n"
        "FROM scratch\n"
    )

    assert base_digests(client, dockerfile, {"BASE_IMAGE": f"{name}:1"}) == {f"{name}:1": image_id}
    assert base_digests(client, dockerfile, {"GIT_SHA": "c0ffee"}, target="test") == {
        "python:3.11-slim": base_image_digest(client, "python:3.11-slim")
    }


@pytest.mark.stack
def test_a_base_image_only_in_the_registry_has_the_pushed_digest(
    client: docker.DockerClient, made: Made, name: str
) -> None:
    image_id = made.build(f"{name}:1", "pushed")
    remote = f"{os.environ['RELAY_REGISTRY']}/{name}"
    client.images.get(image_id).tag(remote, "1")
    pushed = push_image(client, remote, "1")
    made.manifests.append((name, pushed))

    # on the engine, with a digest from its registry: that digest, not the image ID
    assert base_image_digest(client, f"{remote}:1") == pushed != image_id

    client.images.remove(f"{remote}:1")  # the engine no longer has it under that name

    assert base_image_digest(client, f"{remote}:1") == pushed  # the registry's answer
    assert image_key(TREE, base_digests(client, f"FROM {remote}:1\n")) == image_key(
        TREE, {f"{remote}:1": pushed}
    )


@pytest.mark.stack
def test_an_image_that_exists_nowhere_is_a_stage_failure_naming_it(
    client: docker.DockerClient, name: str
) -> None:
    reference = f"{os.environ['RELAY_REGISTRY']}/{name}-nowhere:1"

    with pytest.raises(StageFailed) as raised:
        base_image_digest(client, reference)

    assert str(raised.value).startswith(
        f"base image {reference!r} is neither on the Docker engine nor in its registry"
    )


@pytest.mark.stack
def test_base_digests_names_every_missing_image_at_once(
    client: docker.DockerClient, name: str
) -> None:
    first = f"{os.environ['RELAY_REGISTRY']}/{name}-a:1"
    second = f"{os.environ['RELAY_REGISTRY']}/{name}-b:1"
    dockerfile = f"FROM {first} AS a\nFROM python:3.11-slim\nCOPY --from={second} /x /x\n"

    with pytest.raises(StageFailed) as raised:
        base_digests(client, dockerfile, label="svc/Dockerfile")

    message = str(raised.value)
    assert message.startswith("svc/Dockerfile: base image")
    assert repr(first) in message and repr(second) in message


@pytest.mark.stack
def test_an_unresolvable_from_is_refused_before_the_engine_is_asked(
    client: docker.DockerClient,
) -> None:
    with pytest.raises(TerminalError, match=r"^Dockerfile:2: FROM \$\{BASE_IMAGE\}"):
        base_digests(client, "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")


@pytest.mark.stack
def test_an_unreachable_registry_is_transient(client: docker.DockerClient, name: str) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientError, match="connection refused"):
        base_image_digest(client, f"127.0.0.1:{port}/{name}:1")
