"""Promotion: the exact digests that passed the previous environment, into the next one.

staging: deploy each service (its environment's strategy), then the end-to-end tests.
prod: one approval for the whole promotion, then each service with its strategy (canary).
Every service's attempt lands in the ledger; only recorded successes can be promoted further.
"""

from __future__ import annotations

from contextlib import ExitStack

from prefect import flow
from prefect_docker import DockerHost

from blocks import ContainerRegistry
from flows.approval import approval
from flows.deploy import Attempt, recorded, roll_out
from flows.service_pipeline import ServiceRelease
from relay.graph import topological_order
from relay.promotion import Candidate, previous_environment
from relay.wiring import service_urls
from tasks.promotion import verify_promotable
from tasks.record import artifact_key
from tasks.source import Checkout, checkout_commit, read_manifest
from tasks.test import run_e2e_tests


@flow(name="promote", flow_run_name="promote-{environment}")
def promote(
    repository: str,
    commit: str,
    environment: str = "staging",
    services: list[str] | None = None,
    manifest_file: str = "relay.yaml",
) -> list[ServiceRelease]:
    """Promote `commit`'s images into `environment` from the environment before it."""
    checkout = checkout_commit(repository, commit)
    manifest = read_manifest(checkout, manifest_file)
    previous = previous_environment(manifest, environment)
    order = [s for s in topological_order(manifest.dependency_graph()) if s in (services or [s])]
    registry = ContainerRegistry(address=manifest.registry)
    candidates = verify_promotable(registry, manifest.app, checkout.commit, order, previous)
    env = manifest.environments[environment]
    attempts = [_attempt(manifest.app, environment, env.strategy, c, checkout) for c in candidates]

    results: list[ServiceRelease] = []
    with ExitStack() as stack:
        for attempt in attempts:
            stack.enter_context(recorded(attempt))
        if env.approval.required:
            decision = approval(
                manifest.app,
                environment,
                _approval_description(manifest.app, environment, previous, candidates, checkout),
                env.approval,
                [checkout.author, checkout.author_email],
            )
            for attempt in attempts:
                attempt.approver, attempt.comment = decision.approver, decision.comment
        docker_host = DockerHost()
        for attempt in attempts:
            deployed = roll_out(docker_host, manifest, checkout.path, attempt)
            results.append(
                ServiceRelease(
                    service=attempt.service,
                    environment=environment,
                    commit=checkout.commit,
                    tree=attempt.tree,
                    image=attempt.image,
                    built=False,
                    url=deployed.url,
                    changed=deployed.changed,
                    stage_seconds={},
                )
            )
        if manifest.e2e_tests and not env.approval.required:
            run_e2e_tests(
                manifest.app,
                checkout.path,
                list(manifest.e2e_tests),
                service_urls(manifest, environment),
                artifact_key(manifest.app, environment, "e2e-tests"),
            )
    return results


def _attempt(
    app: str, environment: str, strategy: str, candidate: Candidate, checkout: Checkout
) -> Attempt:
    return Attempt(
        app=app,
        service=candidate.service,
        environment=environment,
        image=candidate.image,
        commit=checkout.commit,
        tree=candidate.verified.tree,
        strategy=strategy,
    )


def _approval_description(
    app: str, environment: str, previous: str, candidates: list[Candidate], checkout: Checkout
) -> str:
    rows = "\n".join(
        f"| {c.service} | `{c.image.split('@')[1][:19]}` | {c.verified.commit[:12]} | "
        f"passed {previous} at {c.verified.ended_at:%Y-%m-%d %H:%M} UTC |"
        for c in candidates
    )
    return f"""## Deploy **{app}** to **{environment}**?

Commit `{checkout.commit}` by {checkout.author}: {checkout.subject}

| service | digest | built from | {previous} |
|---|---|---|---|
{rows}

Every digest above passed {previous} (deploy, integration and end-to-end tests).
"""
