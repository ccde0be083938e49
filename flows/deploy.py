"""Deploying one image of one service to one environment, with its strategy, into the ledger.

Shared by the service pipeline (dev) and promotion (staging, prod): both decide *what* to
deploy; this module is *how*: skip when it already serves, run the environment's strategy
subflow, and record the attempt, whatever its outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prefect import runtime
from prefect_docker import DockerHost

from flows.strategies import strategy_flow
from relay.errors import NotApproved, RolledBack
from relay.ledger import Outcome, Record
from relay.manifest import Manifest
from relay.platforms.docker import DeployResult
from relay.wiring import deploy_spec
from tasks.deploy import current_version, serving_already
from tasks.record import record_deployment


@dataclass
class Attempt:
    """One deployment attempt as the ledger will record it; fields fill in as it goes."""

    app: str
    service: str
    environment: str
    image: str
    commit: str
    tree: str
    strategy: str
    approver: str | None = None
    comment: str | None = None
    release: str | None = None
    unchanged: bool = False  # it served already: nothing happened worth a record
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def record(self, outcome: Outcome, reason: str = "") -> Record:
        return Record(
            app=self.app,
            service=self.service,
            environment=self.environment,
            image=self.image,
            commit=self.commit,
            tree=self.tree,
            strategy=self.strategy,
            outcome=outcome,
            reason=reason,
            approver=self.approver,
            comment=self.comment,
            release=self.release,
            flow_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
            started_at=self.started_at,
            ended_at=datetime.now(UTC),
        )


@contextmanager
def recorded(attempt: Attempt) -> Iterator[Attempt]:
    """Record the attempt in the ledger when the block ends: succeeded, or why not."""
    try:
        yield attempt
    except RolledBack as exc:
        record_deployment(attempt.record(Outcome.ROLLED_BACK, str(exc)))
        raise
    except NotApproved as exc:
        record_deployment(attempt.record(Outcome.REJECTED, str(exc)))
        raise
    except BaseException as exc:
        record_deployment(attempt.record(Outcome.FAILED, f"{type(exc).__name__}: {exc}"))
        raise
    if not attempt.unchanged:
        record_deployment(attempt.record(Outcome.SUCCEEDED))


def roll_out(
    docker_host: DockerHost,
    manifest: Manifest,
    checkout_path: Path,
    attempt: Attempt,
) -> DeployResult:
    """Run the environment's strategy for `attempt.image`, unless it serves already."""
    spec = deploy_spec(
        manifest, attempt.environment, attempt.service, attempt.image, attempt.commit, attempt.tree
    )
    serving = serving_already(docker_host, spec)
    if serving is not None:
        attempt.unchanged = True
        return DeployResult(serving.slot, serving.name, spec.image, spec.public_url, False, None)
    env = manifest.environments[attempt.environment]
    has_previous = current_version(docker_host, spec) is not None
    service_dir = checkout_path / manifest.services[attempt.service].path
    return strategy_flow(env.strategy)(docker_host, spec, env, has_previous, service_dir)
