"""Image stage: find, build, push and tag a service's image; everything by digest.

An image is built once per service content. Its tags are the commit SHA (what people look for)
and `tree-<hash>` (how Relay finds it again for another commit with the same content).
When the registry is Amazon ECR, Relay logs in with ECR's authorization token and makes each
repository (immutable tags, scan on push) before its first push.
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
from relay.images import build_image as _build
from relay.images import image_labels, push_image
from relay.registry import ImageRef
from tasks.tracing import platform_span

NETWORK_RETRIES = {"retries": 3, "retry_delay_seconds": [1, 4, 10], "retry_jitter_factor": 0.3}


def tree_tag(tree: str) -> str:
    return f"tree-{tree[:40]}"


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


@task(name="find-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def find_image(registry: ContainerRegistry, repository: str, tree: str) -> ImageRef | None:
    """The image already built from this content, if the registry has one."""
    with registry.get_client() as client:
        digest = client.digest(repository, tree_tag(tree))
    return ImageRef(registry.address, repository, digest) if digest else None


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
) -> str:
    """Build the service's image, tagged with the commit SHA; returns the local tag."""
    tag = f"{registry.address}/{repository}:{commit}"
    with docker_host.get_client() as client:
        built = _build(
            client,
            context=context,
            dockerfile=dockerfile,
            tag=tag,
            labels=image_labels(service, commit, tree),
            build_args={"GIT_SHA": commit},
        )
    get_run_logger().info("built %s (%s)", tag, built.image_id[:19])
    return tag


@task(name="push-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def push_service_image(
    docker_host: DockerHost, registry: ContainerRegistry, repository: str, commit: str, tree: str
) -> ImageRef:
    """Push the commit tag, then point the tree tag at the same digest."""
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
        client.tag(repository, digest, tree_tag(tree))
    return ImageRef(registry.address, repository, digest)


@task(name="tag-image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def tag_image(registry: ContainerRegistry, image: ImageRef, tag: str) -> ImageRef:
    """Give an existing image another tag (a new commit with unchanged content)."""
    with registry.get_client() as client:
        digest = client.tag(image.repository, image.digest, tag)
    return ImageRef(image.registry, image.repository, digest)
