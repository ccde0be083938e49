"""The container registry images are pushed to and promoted from."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

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

    username: str | None = Field(
        default=None,
        description="The user for registries that need a login (AWS for ECR); none by default.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="The password or token for that user (ECR's authorization token).",
    )

    def auth_config(self) -> dict[str, str] | None:
        """Docker's `auth_config` for a push, or None when the registry needs no login."""
        if self.username is None or self.password is None:
            return None
        return {"username": self.username, "password": self.password.get_secret_value()}

    def get_client(self) -> RegistryClient:
        """A registry client; use it as a context manager so its connections close."""
        auth = self.auth_config()
        credentials = (auth["username"], auth["password"]) if auth else None
        return RegistryClient(self.address, credentials=credentials)
