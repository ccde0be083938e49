"""A client for an OCI / Docker registry's HTTP API (distribution v2).

Relay asks the registry, not the local Docker engine, whether an image exists: the registry is
the shared truth across workers, and a digest is only meaningful once pushed. Retagging is a
manifest copy on the registry, so reusing an image for a new commit moves no layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from relay.errors import TransientError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class ImageRef:
    """An image pinned by digest: `<registry>/<repository>@<digest>`."""

    registry: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host in {"localhost", "[::1]"} or host.startswith("127.")


class RegistryClient:
    """Reads and copies manifests. `address` is `host:port`, as in image names.

    `credentials` (username, password) are sent as HTTP basic auth, which is what ECR accepts
    for the same login Docker uses for its push.
    """

    def __init__(
        self,
        address: str,
        http: httpx.Client | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.address = address
        scheme = "http" if _is_loopback(address) else "https"
        self._http = http or httpx.Client(base_url=f"{scheme}://{address}", timeout=30)
        # Per request, so that an injected client (tests) gets the credentials too.
        self._auth = httpx.BasicAuth(*credentials) if credentials else httpx.USE_CLIENT_DEFAULT

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._http.request(method, url, auth=self._auth, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise TransientError(f"registry {self.address} unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise TransientError(
                f"registry {self.address} answered {response.status_code} to {method} {url}"
            )
        return response

    def digest(self, repository: str, reference: str) -> str | None:
        """The manifest digest of `repository:reference`, or None when it does not exist."""
        response = self._request(
            "HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def tag(self, repository: str, source: str, new_tag: str) -> str:
        """Point `new_tag` at the manifest `source` refers to; returns the digest."""
        got = self._request(
            "GET", f"/v2/{repository}/manifests/{source}", headers={"Accept": MANIFEST_TYPES}
        )
        got.raise_for_status()
        put = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{new_tag}",
            content=got.content,
            headers={"Content-Type": got.headers["Content-Type"]},
        )
        put.raise_for_status()
        return put.headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> list[str]:
        response = self._request("GET", f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])
