"""A release: one commit of an application, its services through their pipelines in
dependency order (a provider before its consumers, so integration tests meet real peers)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.service_pipeline import ServiceRelease, service_pipeline
from relay.errors import TerminalError
from relay.graph import topological_order
from tasks.record import artifact_key
from tasks.source import checkout_commit, read_manifest


@flow(name="release", flow_run_name="release-{environment}")
def release(
    repository: str,
    commit: str = "HEAD",
    services: list[str] | None = None,
    environment: str = "dev",
    manifest_file: str = "relay.yaml",
) -> list[ServiceRelease]:
    """Run the service pipeline of each selected service (all by default) for one commit."""
    checkout = checkout_commit(repository, commit)
    manifest = read_manifest(checkout, manifest_file)
    order = topological_order(manifest.dependency_graph())
    chosen = services or order
    unknown = sorted(set(chosen) - set(order))
    if unknown:
        raise TerminalError(
            f"{manifest.source}: no service named {', '.join(unknown)}; "
            f"use one of: {', '.join(order)}"
        )
    results = [
        service_pipeline(repository, checkout.commit, name, environment, manifest_file)
        for name in order
        if name in chosen
    ]
    create_table_artifact(
        key=artifact_key(manifest.app, environment, "release"),
        table=[
            {
                "service": r.service,
                "image": r.image,
                "built": r.built,
                "changed": r.changed,
                "url": r.url,
            }
            for r in results
        ],
        description=f"Release of {manifest.app} {checkout.commit[:12]} to {environment}",
    )
    return results
