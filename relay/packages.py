"""The Python packages inside an image: what they are (a CycloneDX SBOM) and which of them have
published advisories (pip-audit against a PyPI JSON API), judged like ECR's scan findings.

Why these parts, in this order:

- *What is installed* is read from the image itself, by running its own Python once
  (`importlib.metadata`, which is what pip reads too, so it also works where pip is absent):
  no network, read-only root filesystem, removed afterwards. Requirements files say what was
  asked for; the image is what runs.
- *The SBOM* is a fact of the digest, so it is made once per digest and kept next to the
  ledger (`<ledger dir>/sbom/sha256-<hex>.cdx.json`); a promotion reads it instead of running
  the image again. It holds no vulnerabilities on purpose: those change while the digest
  does not.
- *Advisories* are looked up at every gate, because they are published after builds: a digest
  that passed dev can be stopped on its way to production by yesterday's advisory.
  pip-audit's PyPI service reads `<index>/<name>/<version>/json`, whose `vulnerabilities` are
  the Python Packaging Advisory Database's records (PYSEC-/GHSA- ids, CVE aliases, fixed
  versions). PyPI's advisories carry no severity, so the threshold is any or never.

Everything takes its Docker client as a parameter; the judging is pure.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import docker
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from docker.errors import APIError, ImageNotFound
from packageurl import PackageURL
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip_audit._service.interface import (
    ConnectionError as AuditConnectionError,
)
from pip_audit._service.interface import (
    ResolvedDependency,
    ServiceError,
    SkippedDependency,
)
from pip_audit._service.pypi import PyPIService
from requests.exceptions import RequestException

from relay.allowlist import allowance
from relay.errors import StageFailed, TransientError
from relay.manifest import AllowedFinding
from relay.verdicts import GateVerdict

__all__ = [
    "Advisory",
    "JudgedAdvisory",
    "Package",
    "PackageAudit",
    "PackageVerdict",
    "audit_packages",
    "installed_packages",
    "judge_advisories",
    "make_sbom",
    "sbom_packages",
    "sbom_path",
]

# What the image's Python prints: every installed distribution, as [[name, version], ...].
LIST_SCRIPT = (
    "import json, importlib.metadata as m\n"
    "found = {(d.metadata['Name'], d.version) for d in m.distributions() if d.metadata['Name']}\n"
    "print(json.dumps(sorted(found)))\n"
)
INTERPRETERS = ("python3", "python")
LIST_TIMEOUT = 120
PYPI_JSON = "https://pypi.org/pypi"  # what pip-audit's PyPI service asks


@dataclass(frozen=True, order=True)
class Package:
    """An installed distribution, by its canonical name (PEP 503)."""

    name: str
    version: str

    @property
    def purl(self) -> str:
        return str(PackageURL(type="pypi", name=self.name, version=self.version))


# --- what is installed --------------------------------------------------------------------------


def installed_packages(client: docker.DockerClient, image: str) -> list[Package] | None:
    """The Python distributions installed in `image`, or None when it has no Python.

    The container runs the image's own interpreter with no network (nothing to fetch), a
    read-only root filesystem and no ports, and is removed whatever happens.

    Raises:
        StageFailed: the interpreter ran but did not print the list.
        TransientError: the Docker engine failed (or the image could not be pulled).
    """
    for interpreter in INTERPRETERS:
        output = _run_once(client, image, [interpreter, "-c", LIST_SCRIPT])
        if output is None:
            continue  # no such interpreter in the image
        try:
            pairs = json.loads(output.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise StageFailed(
                f"{image}: {interpreter} did not list its packages; it printed: {output[-500:]}"
            ) from None
        found = {Package(str(canonicalize_name(name)), str(version)) for name, version in pairs}
        return sorted(found)
    return None


def _run_once(client: docker.DockerClient, image: str, argv: list[str]) -> str | None:
    """stdout of `argv` run in `image`; None when the executable is not in the image."""
    try:
        container = client.containers.create(
            image,
            entrypoint=argv[:1],
            command=argv[1:],
            network_mode="none",
            read_only=True,
            environment={"PYTHONDONTWRITEBYTECODE": "1"},
            labels={"relay.purpose": "package-list"},
        )
    except ImageNotFound:
        try:
            client.images.pull(image)
        except APIError as exc:
            raise TransientError(f"cannot pull {image}: {exc.explanation}") from exc
        return _run_once(client, image, argv)
    except APIError as exc:
        raise TransientError(f"cannot create a container of {image}: {exc.explanation}") from exc
    try:
        try:
            container.start()
        except APIError as exc:
            if _not_found(str(exc.explanation)):
                return None
            raise TransientError(f"cannot start {argv[0]} in {image}: {exc.explanation}") from exc
        status = container.wait(timeout=LIST_TIMEOUT).get("StatusCode")
        if status == 127:  # the shell's "command not found", for images whose entry is sh
            return None
        if status != 0:
            errors = container.logs(stdout=False, stderr=True).decode(errors="replace")
            raise StageFailed(f"{image}: {argv[0]} exited {status}: {errors[-500:]}")
        return str(container.logs(stdout=True, stderr=False).decode(errors="replace"))
    finally:
        with contextlib.suppress(APIError):  # already gone
            container.remove(force=True)


def _not_found(explanation: str) -> bool:
    return "executable file not found" in explanation or "no such file" in explanation.lower()


# --- the SBOM -----------------------------------------------------------------------------------


def make_sbom(image: str, packages: Sequence[Package]) -> str:
    """A CycloneDX 1.6 JSON SBOM of `image` (`<repository>@sha256:...`): the image as the
    described component, each package a library with its package URL."""
    repository, _, digest = image.partition("@")
    bom = Bom()
    root = Component(name=repository, version=digest, type=ComponentType.CONTAINER, bom_ref=image)
    bom.metadata.component = root
    libraries = [
        Component(
            name=package.name,
            version=package.version,
            type=ComponentType.LIBRARY,
            purl=PackageURL(type="pypi", name=package.name, version=package.version),
            bom_ref=package.purl,
        )
        for package in packages
    ]
    for library in libraries:
        bom.components.add(library)
    bom.register_dependency(root, libraries)  # the image holds them all, directly
    return JsonV1Dot6(bom).output_as_string(indent=2)


def sbom_packages(sbom: str) -> list[Package]:
    """The PyPI packages listed in a CycloneDX JSON SBOM (what `make_sbom` wrote)."""
    components = json.loads(sbom).get("components") or []
    return sorted(
        Package(str(canonicalize_name(c["name"])), str(c["version"]))
        for c in components
        if str(c.get("purl", "")).startswith("pkg:pypi/") and "version" in c
    )


def sbom_path(ledger_dir: Path, image: str) -> Path:
    """Where the SBOM of `image`'s digest is kept: one file per digest, never rewritten."""
    digest = image.partition("@")[2]
    return ledger_dir / "sbom" / f"{digest.replace(':', '-')}.cdx.json"


# --- advisories ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advisory:
    """A published vulnerability of one installed package."""

    id: str
    aliases: tuple[str, ...]
    package: Package
    fixed_in: tuple[str, ...]
    description: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class PackageAudit:
    """What the advisory index said: advisories, and the packages it could not judge (with
    the reason: a package not on the index, such as a private one, is not proof of safety)."""

    advisories: tuple[Advisory, ...]
    not_audited: tuple[tuple[Package, str], ...] = field(default=())


class _Rebased:
    """pip-audit's HTTP session, asking `base` where pip-audit would ask pypi.org: any server
    with PyPI's JSON API (a mirror that keeps `vulnerabilities`, a test's stand-in)."""

    def __init__(self, session: Any, base: str) -> None:
        self._session, self._base = session, base.rstrip("/")

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._session.get(url.replace(PYPI_JSON, self._base, 1), **kwargs)


def audit_packages(
    packages: Sequence[Package], index: str, cache_dir: Path, timeout: int = 30
) -> PackageAudit:
    """Each package's advisories from the PyPI JSON API at `index` (pip-audit's PyPI service,
    with its HTTP cache in `cache_dir`).

    Raises:
        TransientError: the index is unreachable or answered with an error.
    """
    service = PyPIService(cache_dir=cache_dir, timeout=timeout)
    if index.rstrip("/") != PYPI_JSON:
        service.session = _Rebased(service.session, index)
    advisories: list[Advisory] = []
    skipped: list[tuple[Package, str]] = []
    for package in packages:
        try:
            version = Version(package.version)
        except InvalidVersion:
            skipped.append((package, f"{package.version!r} is not a PEP 440 version"))
            continue
        try:
            spec, results = service.query(ResolvedDependency(name=package.name, version=version))
        except (AuditConnectionError, ServiceError, RequestException) as exc:
            raise TransientError(f"advisories of {package.name} from {index}: {exc}") from exc
        if isinstance(spec, SkippedDependency):
            skipped.append((package, spec.skip_reason))
            continue
        for result in results:
            advisories.append(
                Advisory(
                    id=result.id,
                    aliases=tuple(sorted(result.aliases)),
                    package=package,
                    fixed_in=tuple(str(v) for v in result.fix_versions),
                    description=result.description,
                )
            )
    return PackageAudit(tuple(advisories), tuple(skipped))


# --- the verdict --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedAdvisory:
    """An advisory with what the gate made of it; `note` says why an allow entry did or did
    not count."""

    advisory: Advisory
    allowed: bool
    note: str = ""

    @property
    def blocking(self) -> bool:
        return not self.allowed


PackageVerdict = GateVerdict[JudgedAdvisory]


def judge_advisories(
    advisories: Sequence[Advisory],
    fail_on: Literal["any", "never"],
    allow: Sequence[AllowedFinding],
    today: date,
) -> PackageVerdict:
    """Which advisories stop the image: every one, unless an allow entry names it (by its id
    or any alias, so a team can write the CVE it knows) and its `until` is today or later. An
    expired entry is reported as such, so whoever reads the failure knows the exception ran
    out rather than wondering why a "known" advisory blocks."""
    rows = []
    for advisory in sorted(advisories, key=lambda a: (a.package, a.id)):
        verdict = allowance(advisory.names, allow, today)
        rows.append(JudgedAdvisory(advisory, verdict.allowed, verdict.note))
    return GateVerdict.of(tuple(rows), report_only=fail_on == "never")
