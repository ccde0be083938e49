"""A client for an OCI / Docker registry's HTTP API (distribution v2).

Relay asks the registry, not the local Docker engine, whether an image exists: the registry is
the shared truth across workers, and a digest is only meaningful once pushed. Retagging is a
manifest copy on the registry, so reusing an image for a new commit moves no layers.
"""

from __future__ import annotations

import re

import httpx
from pydantic import BaseModel, ConfigDict

from relay.errors import TransientError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


_PINNED = re.compile(
    r"(?P<registry>[^/@\s]+)/(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})"
)


class ImageRef(BaseModel):
    """An image pinned by digest: `<registry>/<repository>@<digest>`.

    The digest travels in this typed form from the push to the switch, so no step re-parses a
    string or asks the registry again by tag once a release holds it. `parse` is for the edges
    where text comes in (the ledger, container labels, a command line).
    """

    model_config = ConfigDict(frozen=True)

    registry: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """`sha256:` and 12 hex digits, as people read digests."""
        return self.digest[:19]

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """`127.0.0.1:5000/shop/orders@sha256:<64 hex>` as an ImageRef.

        Raises:
            ValueError: `text` is not pinned by a sha256 digest (the message says so).
        """
        match = _PINNED.fullmatch(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not an image pinned by digest; "
                "write <registry>/<repository>@sha256:<64 hex digits>"
            )
        return cls(**match.groupdict())


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

    def labels(self, repository: str, reference: str) -> dict[str, str]:
        """The image's labels (its config blob's `config.Labels`), e.g. the commit it was built
        from; empty for an index (a multi-platform list has no config of its own)."""
        got = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
        )
        got.raise_for_status()
        config = got.json().get("config") or {}
        if "digest" not in config:
            return {}
        # ECR answers with a redirect to S3; httpx drops the credentials on another origin.
        blob = self._request(
            "GET", f"/v2/{repository}/blobs/{config['digest']}", follow_redirects=True
        )
        blob.raise_for_status()
        return dict((blob.json().get("config") or {}).get("Labels") or {})

    def tags(self, repository: str) -> list[str]:
        response = self._request("GET", f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])
