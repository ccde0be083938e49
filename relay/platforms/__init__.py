"""Platforms: where services run, `docker` (containers behind HAProxy on one engine) or
`kubernetes` (a cluster). Both offer the same step operations, the `Platform` protocol, so one
strategy executor (`flows/strategies/execute.py`) drives either; `tasks/deploy.py` picks the
platform from the spec's type (`relay.specs.deploy_spec` builds the environment's kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from relay.platforms.docker import DeployResult, DeploySpec, Rollout, Running
from relay.platforms.kubernetes import KubeRollout, KubeSpec, Version

Spec = DeploySpec | KubeSpec
AnyRollout = Rollout | KubeRollout
Current = Running | Version

__all__ = ["AnyRollout", "Current", "DeployResult", "Platform", "Spec"]


class Platform(Protocol):
    """The steps strategies are made of (see `relay.strategies.steps`)."""

    type: str

    def current(self, spec: Any) -> Any:
        """What serves the service now, or None (a first deployment)."""

    def serves(self, spec: Any) -> Any:
        """What serves now if it is exactly `spec` (nothing to deploy), else None."""

    def start_new(self, spec: Any, config_values: Mapping[str, str] | None = None) -> Any:
        """The new version next to the stable one, ready, without traffic where possible."""

    def set_canary_weight(self, rollout: Any, percent: int) -> Any: ...

    def switch(self, rollout: Any) -> None: ...

    def stop_previous(self, rollout: Any) -> None: ...

    def abort(self, rollout: Any) -> None: ...
