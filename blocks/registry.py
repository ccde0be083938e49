"""The container registry images are pushed to and promoted from."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from relay.registry import RegistryClient


class ContainerRegistry(Block):
    """An OCI registry reached over its HTTP API (the local registry, ECR, GHCR, ...).

    Example:
        ```python
        from blocks import ContainerRegistry
        registry = ContainerRegistry.load("BLOCK_NAME")
        with registry.get_client() as client:
            client.digest("shop/orders", "4f2c9e0a1b2c")
        ```
    """

    _block_type_name = "Relay Container Registry"
    _block_type_slug = "relay-container-registry"
    _description = "An OCI registry that Relay pushes images to and reads digests from."
    _documentation_url = "https://distribution.github.io/distribution/spec/api/"  # type: ignore[assignment]

    address: str = Field(
        default="127.0.0.1:5000",
        description="The registry's host:port as it appears in image names.",
    )

    def get_client(self) -> RegistryClient:
        """A registry client; use it as a context manager so its connections close."""
        return RegistryClient(self.address)
