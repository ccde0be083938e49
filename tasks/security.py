"""Security gates between an image and any deployment of it: compliance and packages.

Both run in the service pipeline once the image exists (built, or reused for unchanged
content), and again in a promotion before anything is deployed: a new advisory, a changed
policy or a check skipped no longer can stop a digest that passed the environment before.
SAST (tasks/sast.py) runs on the source before the image is built; ECR's scan findings are
tasks/scan.py.

Each gate publishes a table artifact and, when it refuses, raises StageFailed naming every
problem with its fix.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from relay.compliance import (
    ComplianceVerdict,
    Violation,
    as_rows,
    dockerfile_policies,
    environment_policies,
    image_policies,
    judge,
    kubernetes_policies,
    open_violations,
    run_checkov,
)
from relay.errors import Refusals, StageFailed
from relay.manifest import Manifest, Packages
from relay.packages import (
    Package,
    PackageVerdict,
    audit_packages,
    installed_packages,
    judge_advisories,
    make_sbom,
    sbom_packages,
    sbom_path,
)
from relay.platforms.kubernetes.objects import render
from relay.registry import ImageRef
from relay.settings import ledger_path, relay_home
from relay.specs import kubernetes_spec
from tasks.record import artifact_key
from tasks.support.retry import on_transient


@task(name="check-compliance", cache_policy=NO_CACHE)
def check_compliance(
    manifest: Manifest,
    service: str,
    environment: str,
    image: str,
    objects: list[dict[str, Any]] | None = None,
) -> ComplianceVerdict:
    """checkov and Relay's policies on what `service` deploys to `environment`: its
    Dockerfile, the image reference, the environment's settings and, for a kubernetes
    environment, its objects (`objects`, else rendered here as the platform would apply them).

    Raises:
        StageFailed: a violation that `security.compliance.skip` does not cover.
        TerminalError: checkov is not installed.
    """
    spec = manifest.services[service]
    dockerfile = spec.dockerfile_path(manifest.root)
    label = f"{spec.path}/{spec.dockerfile}"
    violations: list[Violation] = [
        *run_checkov(dockerfile, "dockerfile", label=label),
        *dockerfile_policies(dockerfile.read_text(encoding="utf-8"), label),
        *image_policies(image, environment, f"services.{service} image"),
        *environment_policies(manifest, environment),
    ]
    if objects is None and manifest.environments[environment].platform == "kubernetes":
        # What the platform will apply, as `relay render` prints it (no Secret values).
        pinned = ImageRef.parse(image)
        objects = render(kubernetes_spec(manifest, environment, service, pinned, "", ""))
    if objects:
        violations += kubernetes_policies(objects, environment)
        violations += _checkov_objects(service, objects)
    verdict = judge(violations, manifest.security.compliance)
    rows = as_rows(verdict) or [{"where": "", "rule": "no violations", "fix": "", "status": ""}]
    create_table_artifact(
        key=artifact_key(manifest.app, service, environment, "compliance"),
        table=rows,
        description=(
            f"Compliance of {service} for {environment}: checkov and Relay's policies "
            f"({'passed' if verdict.passed else 'refused'})"
        ),
    )
    if not verdict.passed:
        found = open_violations(verdict)
        first = found[0].rule_id
        listed = "\n".join(f"  {violation}" for violation in found)
        raise StageFailed(
            f"{service}: {len(found)} compliance violation(s) for {environment}:\n"
            f"{listed}\nfix them, or skip a check that does not apply in relay.yaml under "
            f"security.compliance.skip: {{id: {first}, reason: <why it does not apply>}}"
        )
    return verdict


def _checkov_objects(service: str, objects: list[dict[str, Any]]) -> list[Violation]:
    """checkov's Kubernetes checks on the rendered objects, written out as one manifest."""
    with tempfile.TemporaryDirectory(prefix="relay-render-") as directory:
        path = Path(directory) / f"{service}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        return run_checkov(path, "kubernetes", label=f"rendered {service}")


@task(
    name="audit-packages",
    cache_policy=NO_CACHE,
    **on_transient(2, [2, 10]),
)
def audit_image_packages(
    docker_host: DockerHost, packages: Packages, app: str, service: str, image: str
) -> PackageVerdict:
    """The SBOM of `image` (made once per digest) and its packages' advisories, judged.

    Raises:
        StageFailed: an advisory no current allow entry covers (with `fail_on: any`).
        TransientError: the Docker engine or the advisory index failed (retried).
    """
    logger = get_run_logger()
    listed = _sbom(docker_host, image)
    audit = audit_packages(listed, packages.advisories, relay_home() / "pip-audit")
    verdict = judge_advisories(audit.advisories, packages.fail_on, packages.allow, _today())
    by_package: dict[Package, list[str]] = {}
    for row in verdict.rows:
        status = "allowed" if row.allowed else "open"
        by_package.setdefault(row.advisory.package, []).append(f"{row.advisory.id} ({status})")
    skipped = dict(audit.not_audited)
    create_table_artifact(
        key=artifact_key(app, service, "packages"),
        table=[
            {
                "package": p.name,
                "version": p.version,
                "purl": p.purl,
                "advisories": ", ".join(by_package.get(p, [])) or ("-" if p not in skipped else ""),
                "audit": f"not audited: {skipped[p]}" if p in skipped else "audited",
            }
            for p in listed
        ]
        or [{"package": "no Python packages in the image"}],
        description=(
            f"{service} `{image.partition('@')[2]}`: {len(listed)} Python packages "
            f"(CycloneDX SBOM: {sbom_path(ledger_path().parent, image)}); advisories from "
            f"{packages.advisories}; fail_on {packages.fail_on}: "
            f"{'passed' if verdict.passed else 'refused'}"
        ),
    )
    for package, reason in audit.not_audited:
        logger.warning("%s: %s %s not audited: %s", service, package.name, package.version, reason)
    logger.info(
        "%s: %d packages, %d advisories (%d allowed): %s",
        service,
        len(listed),
        len(verdict.rows),
        sum(row.allowed for row in verdict.rows),
        "passed" if verdict.passed else "refused",
    )
    if not verdict.passed:
        raise StageFailed(_package_failure(service, image, packages, verdict))
    return verdict


def _sbom(docker_host: DockerHost, image: str) -> list[Package]:
    """The packages of `image`, from its stored SBOM or, the first time, from the image."""
    path = sbom_path(ledger_path().parent, image)
    if path.is_file():
        return sbom_packages(path.read_text(encoding="utf-8"))
    with docker_host.get_client() as client:
        found = installed_packages(client, image)
    if found is None:
        get_run_logger().info("%s has no Python interpreter: no Python packages", image)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{uuid.uuid4().hex}.tmp")  # unique per writer
    temporary.write_text(make_sbom(image, found or []), encoding="utf-8")
    temporary.replace(path)  # whole or absent: a concurrent reader never sees half of it
    return found or []


def _today() -> date:
    return datetime.now(UTC).date()


def _package_failure(service: str, image: str, packages: Packages, verdict: PackageVerdict) -> str:
    lines = [
        f"{service}: image {image.partition('@')[2]} has {len(verdict.blocking)} Python package "
        f"advisor{'y' if len(verdict.blocking) == 1 else 'ies'} (advisories from "
        f"{packages.advisories}):"
    ]
    for row in verdict.blocking:
        advisory = row.advisory
        aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
        fixed = f"; fixed in {', '.join(advisory.fixed_in)}" if advisory.fixed_in else ""
        note = f" [{row.note}]" if row.note else ""
        lines.append(
            f"  {advisory.package.name} {advisory.package.version}: {advisory.id}{aliases}"
            f"{fixed}{note}"
        )
    first = verdict.blocking[0].advisory.id
    lines.append(
        "upgrade them to a fixed version (then a new commit), or accept one for a while in "
        "relay.yaml under security.packages.allow: "
        f"{{id: {first}, reason: <why it is safe>, until: YYYY-MM-DD}}"
    )
    return "\n".join(lines)


def check_security(
    docker_host: DockerHost,
    manifest: Manifest,
    environment: str,
    images: list[tuple[str, str]],
    objects: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    """Both gates for each `(service, image)`, then one error naming every refusal: a
    promotion is refused as a whole, before anything is deployed, and whoever fixes it sees
    all the work at once."""
    refusals = Refusals("the security gates refused; nothing was deployed")
    for service, image in images:
        with refusals.check():
            check_compliance(manifest, service, environment, image, (objects or {}).get(service))
        with refusals.check():
            audit_image_packages(
                docker_host, manifest.security.packages, manifest.app, service, image
            )
    refusals.raise_if_any()
