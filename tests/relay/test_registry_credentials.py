"""RegistryClient sends a login when given one (ECR's token as basic auth) and nothing
otherwise; ContainerRegistry hands its saved login to both the HTTP client and Docker."""

from __future__ import annotations

import base64

import httpx

from blocks import ContainerRegistry
from relay.registry import RegistryClient

DIGEST = "sha256:" + "a" * 64


def recording_client(seen: list[str | None]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    return httpx.Client(base_url="https://registry.invalid", transport=httpx.MockTransport(handler))


def test_credentials_are_sent_as_basic_auth() -> None:
    seen: list[str | None] = []
    with RegistryClient("registry.invalid", recording_client(seen), ("AWS", "tok3n")) as client:
        assert client.digest("shop/orders", "v1") == DIGEST
    assert seen == ["Basic " + base64.b64encode(b"AWS:tok3n").decode()]


def test_no_credentials_no_authorization_header() -> None:
    seen: list[str | None] = []
    with RegistryClient("registry.invalid", recording_client(seen)) as client:
        client.digest("shop/orders", "v1")
    assert seen == [None]


def test_the_block_hands_out_its_login() -> None:
    registry = ContainerRegistry(address="127.0.0.1:5000", username="AWS", password="tok3n")  # type: ignore[arg-type]
    assert registry.auth_config() == {"username": "AWS", "password": "tok3n"}
    assert ContainerRegistry(address="127.0.0.1:5000").auth_config() is None
