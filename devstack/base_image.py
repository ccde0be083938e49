"""The base image: Relay's stand-in for ``python:3.11-slim``, since no image registry can be
reached to pull it. Its root filesystem (``devstack.rootfs``) is loaded with ``docker import``
and tagged both ``python:3.11-slim`` and ``relay/python-base:3.11``, so application Dockerfiles
(``ARG BASE_IMAGE=python:3.11-slim`` / ``FROM ${BASE_IMAGE}``) build unchanged with pull
disabled. A revision label makes a machine with an older one build it again, and a self-test
checks what application Dockerfiles rely on before the image is trusted."""

from __future__ import annotations

import contextlib
import json
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from devstack.docker_api import MANAGED_LABEL, docker_api, docker_client, image_inspect
from devstack.errors import StackError
from devstack.model import ComponentStatus
from devstack.paths import Paths
from devstack.rootfs import write_rootfs

BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_RELAY = "relay/python-base:3.11"
BASE_IMAGE_LABEL = "relay.base-image"
# Bumped whenever the base image's content changes, so that a machine that built an older one
# builds it again: 2 added libgcc_s (glibc loads it to end threads; without it a Python
# process that stops a server thread on SIGTERM aborts).
BASE_IMAGE_REVISION = "2"
REVISION_LABEL = "relay.base-revision"
IMAGE_PATH = "/usr/local/bin:/usr/bin:/bin"


_SELFTEST_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN pip --version && mkdir /x
USER 65534
CMD ["python3", "-c", "import os; print(os.getuid())"]
"""


def _verify_base_image(paths: Paths, client: Any) -> None:
    """Run the checks that application Dockerfiles rely on; raise StackError if one fails."""
    labels = {MANAGED_LABEL: "true"}
    script = (
        "echo ok && ls /bin/ls >/dev/null && python3 -c "
        '\'import ssl, sqlite3, json, ctypes, uuid, hashlib; ctypes.CDLL("libgcc_s.so.1"); '
        'assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0\' '
        "&& pip --version"
    )
    out = client.containers.run(
        BASE_IMAGE_RELAY,
        ["sh", "-c", script],
        network_mode="host",
        remove=True,
        labels=labels,
    ).decode()
    if not out.startswith("ok") or "pip " not in out:
        raise StackError(f"base-image: unexpected self-test output: {out!r}")
    with tempfile.TemporaryDirectory(dir=paths.tmp) as ctx:
        Path(ctx, "Dockerfile").write_text(_SELFTEST_DOCKERFILE)
        tag = "relay/base-selftest:latest"
        client.images.build(
            path=ctx, tag=tag, network_mode="host", pull=False, rm=True, forcerm=True
        )
        try:
            uid = client.containers.run(
                tag, network_mode="host", remove=True, labels=labels
            ).decode()
        finally:
            client.images.remove(tag, force=True)
    if uid.strip() != "65534":
        raise StackError(f"base-image: USER 65534 self-test printed {uid!r}")


def _build_base_image(paths: Paths) -> str:
    client = docker_client(paths)
    tar_path = paths.tmp / "base-rootfs.tar"
    try:
        facts = write_rootfs(tar_path)
        repo, tag = BASE_IMAGE_RELAY.split(":")
        description = (
            "Relay's local stand-in for python:3.11-slim: Debian's python3.11 "
            f"{facts['python']} copied from the host, busybox-static, pip {facts['pip']}; "
            "built by devstack without any image registry"
        )
        changes = [
            f"ENV PATH={IMAGE_PATH}",
            "ENV LANG=C.UTF-8",
            "ENV PIP_DISABLE_PIP_VERSION_CHECK=1",
            "ENV PIP_ROOT_USER_ACTION=ignore",
            f"LABEL {BASE_IMAGE_LABEL}={json.dumps(description)}",
            f"LABEL relay.python-version={facts['python']}",
            f"LABEL {REVISION_LABEL}={BASE_IMAGE_REVISION}",
            f"LABEL org.opencontainers.image.description={json.dumps(description)}",
            'CMD ["python3"]',
        ]
        client.api.import_image_from_file(str(tar_path), repository=repo, tag=tag, changes=changes)
    finally:
        tar_path.unlink(missing_ok=True)
    image = client.images.get(BASE_IMAGE_RELAY)
    image.tag(*BASE_IMAGE.split(":"))
    try:
        _verify_base_image(paths, client)
    except Exception as e:
        # untag, so that the next `up` builds it again instead of trusting a broken image
        for ref in (BASE_IMAGE, BASE_IMAGE_RELAY):
            with contextlib.suppress(Exception):
                client.images.remove(ref, noprune=False)
        if isinstance(e, StackError):
            raise
        raise StackError(f"base-image: self-test failed: {e}") from e
    finally:
        client.close()
    return str(image.id)


def ensure_base_image(paths: Paths) -> tuple[str, str]:
    """Returns (verb, detail) for the progress line."""
    ours = image_inspect(paths, BASE_IMAGE_RELAY)
    verb = "present"
    labels = ((ours or {}).get("Config") or {}).get("Labels") or {}
    if ours is not None and labels.get(REVISION_LABEL) != BASE_IMAGE_REVISION:
        ours = None  # an older revision: built again (images built FROM it keep theirs)
    if ours is None:
        _build_base_image(paths)
        ours = image_inspect(paths, BASE_IMAGE_RELAY)
        verb = "built"
        if ours is None:
            raise StackError(f"base-image: {BASE_IMAGE_RELAY} missing right after building it")
    slim = image_inspect(paths, BASE_IMAGE)
    note = ""
    if slim is None or (
        slim["Id"] != ours["Id"]
        and BASE_IMAGE_LABEL in ((slim.get("Config") or {}).get("Labels") or {})
    ):
        repo, tag = BASE_IMAGE.split(":")
        query = urllib.parse.urlencode({"repo": repo, "tag": tag})
        docker_api(paths, f"/images/{ours['Id']}/tag?{query}", method="POST")
    elif slim["Id"] != ours["Id"]:
        note = f"; {BASE_IMAGE} is another image, kept"
    size = ours.get("Size", 0) / 1e6
    return verb, f"{BASE_IMAGE} = {BASE_IMAGE_RELAY}, {size:.0f} MB{note}"


def base_image_status(paths: Paths, docker_up: bool) -> ComponentStatus:
    info = image_inspect(paths, BASE_IMAGE_RELAY) if docker_up else None
    detail = f"{info.get('Size', 0) / 1e6:.0f} MB, {info['Id'][:19]}" if info else ""
    exists = info is not None
    return ComponentStatus("base-image", exists, None, BASE_IMAGE_RELAY, exists, detail)
