"""Image stage: find, build, push and tag a service's image; everything by digest.

An image is built once per *image key*: the service's tree hash, the digests of the base images
its Dockerfile starts FROM, and its build arguments (`relay.image_key`). Its tags are the commit
SHA (what people look for) and `key-<key>` (how Relay finds it again for another commit with the
same content, and misses it once a base image was patched). When the registry is Amazon ECR,
Relay logs in with ECR's authorization token and makes each repository (immutable tags, scan on
push) before its first push.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks import ContainerRegistry
from blocks.aws import aws_client
from relay.aws.ecr import docker_auth, ensure_repository, parse_ecr_address
from relay.image_key import base_digests, image_key, key_tag
from relay.images import LABEL_PREFIX, image_labels, push_image
from relay.images import build_image as _build
from relay.registry import ImageRef
from tasks.support.retry import on_transient
from tasks.support.tracing import platform_span

NETWORK_RETRIES = on_transient(3, [1, 4, 10], jitter=0.3)


@task(name="log-in-registry", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def log_in_registry(address: str) -> ContainerRegistry:
    """The registry at `address`, with ECR's login when it is ECR.

    The token is fetched per run, not saved in a block: it expires after 12 hours.
    """
    registry = ContainerRegistry(address=address)
    if parse_ecr_address(address) is not None:
        auth = docker_auth(aws_client("ecr"))
        registry = ContainerRegistry(
            address=address,
            username=auth["username"],
            password=auth["password"],  # type: ignore[arg-type]  # pydantic makes it SecretStr
        )
    return registry


@task(name="image-key", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def find_image_key(
    docker_host: DockerHost,
    context: Path,
    dockerfile: str,
    tree: str,
    build_args: dict[str, str],
) -> str:
    """The key an image of this content is built and found under: the tree, the digests of the
    base images the engine would build FROM now, and the build arguments."""
    text = (context / dockerfile).read_text(encoding="utf-8")
    with docker_host.get_client() as client:
        bases = base_digests(client, text, build_args)
    get_run_logger().info(
        "image key from tree %s and %s",
        tree[:12],
        ", ".join(f"{b} {d[:19]}" for b, d in bases.items()),
    )
    return image_key(tree, bases, build_args)


@task(name="find-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def find_image(registry: ContainerRegistry, repository: str, key: str) -> ImageRef | None:
    """The image already built under this key, if the registry has one."""
    with registry.get_client() as client:
        digest = client.digest(repository, key_tag(key))
    return (
        ImageRef(registry=registry.address, repository=repository, digest=digest)
        if digest
        else None
    )


@task(name="image-origin", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def image_origin(registry: ContainerRegistry, image: ImageRef) -> str:
    """The commit a reused image was built from (its label), for the release's provenance."""
    with registry.get_client() as client:
        labels = client.labels(image.repository, image.digest)
    return labels.get(f"{LABEL_PREFIX}.commit", "")


@task(name="build-image", cache_policy=NO_CACHE)
def build_image(
    docker_host: DockerHost,
    registry: ContainerRegistry,
    repository: str,
    service: str,
    context: Path,
    dockerfile: str,
    commit: str,
    tree: str,
    key: str,
    build_args: dict[str, str],
) -> str:
    """Build the service's image, tagged with the commit SHA; returns the local tag.

    GIT_SHA is passed as a build argument for the image to say what it is, but is not part of
    the key: it changes every commit, and would make every image new."""
    tag = f"{registry.address}/{repository}:{commit}"
    with docker_host.get_client() as client:
        built = _build(
            client,
            context=context,
            dockerfile=dockerfile,
            tag=tag,
            labels={**image_labels(service, commit, tree), f"{LABEL_PREFIX}.key": key},
            build_args={**build_args, "GIT_SHA": commit},
        )
    get_run_logger().info("built %s (%s)", tag, built.image_id[:19])
    return tag


@task(name="push-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def push_service_image(
    docker_host: DockerHost, registry: ContainerRegistry, repository: str, commit: str, key: str
) -> ImageRef:
    """Push the commit tag, then point the key tag at the same digest."""
    name = f"{registry.address}/{repository}"
    if parse_ecr_address(registry.address) is not None:
        get_run_logger().info("%s", ensure_repository(aws_client("ecr"), repository))
    with (
        docker_host.get_client() as client,
        platform_span("image push", repository=name, commit=commit) as span,
    ):
        digest = push_image(client, name, commit, registry.auth_config())
        span.set_attribute("relay.digest", digest)
    with registry.get_client() as client:
        client.tag(repository, digest, key_tag(key))
    return ImageRef(registry=registry.address, repository=repository, digest=digest)


@task(name="tag-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def tag_image(registry: ContainerRegistry, image: ImageRef, tag: str) -> ImageRef:
    """Give an existing image another tag (a new commit with unchanged content)."""
    with registry.get_client() as client:
        digest = client.tag(image.repository, image.digest, tag)
    return image.model_copy(update={"digest": digest})
