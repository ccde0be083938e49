"""The `docker` platform: services as containers on one Docker engine, behind HAProxy.

Glossary (as Argo Rollouts' context does):
- *slot*: `blue` or `green`, one of a service's two container positions, each with its own port.
  A new version starts in the free slot next to the serving one (host networking means two
  containers cannot share a port).
- *active slot*: the one the router sends traffic to.
- the container's labels are the truth about what runs: `relay.digest`, `relay.commit`, ...
  so a restarted worker rebuilds its view from the engine, not from memory.

A deploy is: start in the free slot, wait until healthy, switch the router, stop the old one.
If the new container never becomes healthy, it is removed and the old one keeps serving.

Blue/green keeps the old one instead, for `keep_previous_seconds` (`keep_previous`): it runs
without traffic, a small JSON file under `<home>/kept/` says until when, and the deploy ends (its
lock freed). Within that window `switch_back` moves the traffic back through the router alone,
as Argo Rollouts' `scaleDownDelaySeconds` allows; after it, `stop_kept` (from a scheduled run)
or the service's next deploy (which starts in that slot) removes it.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container
from docker.types import LogConfig

from relay.aws.secrets import ServiceConfig
from relay.errors import RelayError, StageFailed, TransientError
from relay.registry import ImageRef
from relay.traffic import TrafficRouter
from relay.traffic.haproxy import SLOTS, Route

LABEL = "relay"


@dataclass(frozen=True)
class DeploySpec:
    """Everything needed to run one version of one service in one environment."""

    app: str
    environment: str
    service: str
    image: ImageRef
    commit: str
    tree: str
    route: Route
    env: Mapping[str, str] = field(default_factory=dict)
    health_timeout: float = 60.0
    # The configuration secrets' versions and keys (never values): a container started from
    # this spec gets those values in its environment, and the versions in its labels.
    config: ServiceConfig | None = None
    # The fingerprint of its run settings (relay.releases.fingerprint): a container started
    # with other settings (a port, a neighbour, a secret) does not serve this spec.
    settings: str = ""
    release: str = ""  # the release it belongs to (relay.releases), for people and `status`
    # Docker's awslogs driver options (group, region, endpoint) when the service's output goes
    # to CloudWatch Logs; each container adds its own stream. Empty: the engine's default.
    log_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def config_label(self) -> str:
        return self.config.label if self.config else ""

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.route.public_port}"


@dataclass(frozen=True)
class Running:
    """A container of a service as the engine reports it."""

    container_id: str
    name: str
    slot: str
    image: str
    digest: str
    commit: str
    status: str
    config: str = ""  # the secret versions it was started with (ServiceConfig.label)
    settings: str = ""  # the run settings' fingerprint it was started with
    release: str = ""


@dataclass(frozen=True)
class Rollout:
    """A new version started next to the stable one (which may be None on a first deploy)."""

    spec: DeploySpec
    slot: str
    container: str
    stable: Running | None

    @property
    def slot_url(self) -> str:
        """The new version itself, bypassing the router: for smoke tests before traffic."""
        return f"http://127.0.0.1:{self.spec.route.slots[self.slot]}"

    def result(self) -> DeployResult:
        return DeployResult(
            self.slot,
            self.container,
            str(self.spec.image),
            self.spec.public_url,
            True,
            self.stable.image if self.stable else None,
        )


@dataclass(frozen=True)
class DeployResult:
    slot: str
    container: str
    image: str
    url: str
    changed: bool
    previous: str | None


@dataclass(frozen=True)
class Kept:
    """The previous version of a service, kept running without traffic after a switch, so
    that switching back moves traffic only."""

    app: str
    environment: str
    service: str
    slot: str
    container: str  # its name, for people
    container_id: str  # what is stopped: a later container in the slot has the same name
    image: str
    until: str  # ISO 8601, UTC

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.until) <= datetime.now(UTC)


def kept_versions(home: Path) -> list[Kept]:
    """Every previous version noted as kept under `home` (see `DockerPlatform.keep_previous`),
    expired or not; unreadable notes are skipped."""
    found = []
    for path in sorted((home / "kept").glob("*.json")):
        try:
            found.append(Kept(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found


def _labels(spec: DeploySpec, slot: str) -> dict[str, str]:
    return {
        f"{LABEL}.managed": "true",
        f"{LABEL}.app": spec.app,
        f"{LABEL}.env": spec.environment,
        f"{LABEL}.service": spec.service,
        f"{LABEL}.slot": slot,
        f"{LABEL}.image": str(spec.image),
        f"{LABEL}.digest": spec.image.digest,
        f"{LABEL}.commit": spec.commit,
        f"{LABEL}.tree": spec.tree,
        f"{LABEL}.config": spec.config_label,
        f"{LABEL}.settings": spec.settings,
        f"{LABEL}.release": spec.release,
    }


def _others(slot: str, weight: int) -> dict[str, int]:
    return {s: weight for s in SLOTS if s != slot}


def log_stream(container: str, image: ImageRef) -> str:
    """A container's stream in its service's log group: its name (app, environment, service,
    slot) and the short digest of what it runs, so each line says which version wrote it."""
    return f"{container}-{image.digest.removeprefix('sha256:')[:12]}"


def _log_config(spec: DeploySpec, name: str) -> LogConfig | None:
    if not spec.log_options:
        return None
    options = {**spec.log_options, "awslogs-stream": log_stream(name, spec.image)}
    return LogConfig(type="awslogs", config=options)


def container_name(app: str, environment: str, service: str, slot: str) -> str:
    return f"relay-{app}-{environment}-{service}-{slot}"


def health_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class DockerPlatform:
    type = "docker"

    def __init__(
        self, client: docker.DockerClient, router: TrafficRouter, home: Path | None = None
    ) -> None:
        self.client = client
        self.router = router
        # Where kept previous versions are noted (`keep_previous`); None: never kept.
        self.kept_dir = home / "kept" if home is not None else None

    def running(self, app: str, environment: str, service: str) -> list[Running]:
        """The service's containers in this environment, read from their labels."""
        filters: dict[str, str | list[str] | bool] = {
            "label": [
                f"{LABEL}.managed=true",
                f"{LABEL}.app={app}",
                f"{LABEL}.env={environment}",
                f"{LABEL}.service={service}",
            ]
        }
        found = []
        # ignore_removed: a container removed between the listing and its inspection (another
        # deploy's clean-up) is simply gone, not an error that fails this deploy.
        for c in self.client.containers.list(all=True, filters=filters, ignore_removed=True):
            labels = c.labels
            found.append(
                Running(
                    container_id=str(c.id),
                    name=str(c.name),
                    slot=labels.get(f"{LABEL}.slot", ""),
                    image=labels.get(f"{LABEL}.image", ""),
                    digest=labels.get(f"{LABEL}.digest", ""),
                    commit=labels.get(f"{LABEL}.commit", ""),
                    status=str(c.status),
                    config=labels.get(f"{LABEL}.config", ""),
                    settings=labels.get(f"{LABEL}.settings", ""),
                    release=labels.get(f"{LABEL}.release", ""),
                )
            )
        return found

    def current(self, spec: DeploySpec) -> Running | None:
        """`Platform.current`: the active container of `spec`'s service."""
        return self.active(spec.app, spec.environment, spec.service)

    def active(self, app: str, environment: str, service: str) -> Running | None:
        """The running container that receives (most of the) traffic, if any."""
        live = [r for r in self.running(app, environment, service) if r.status == "running"]
        if not live:
            return None
        try:
            weights = self.router.weights(service)
        except RelayError:  # the router has never heard of this service
            weights = {}
        serving = [r for r in live if weights.get(r.slot, 0) > 0]
        # The engine lists the newest container first; on a tie (a canary at 50%) the older
        # one is the stable version.
        return max(reversed(serving), key=lambda r: weights[r.slot]) if serving else None

    def serves(self, spec: DeploySpec) -> Running | None:
        """The active container if it runs exactly `spec.image` with the same configuration
        versions and run settings, takes all the traffic and answers its health check; an
        interrupted canary (traffic still split) does not count, nor does a rotated secret or a
        changed setting."""
        self.router.ensure_route(spec.route)
        current = self.active(spec.app, spec.environment, spec.service)
        if current is None or current.image != str(spec.image):
            return None
        if current.config != spec.config_label or current.settings != spec.settings:
            return None
        if self.router.weights(spec.service) != {current.slot: 100, **_others(current.slot, 0)}:
            return None
        return current if health_ok(spec.public_url + spec.route.health) else None

    # -- the steps strategies are made of -----------------------------------------------------

    def start_new(
        self, spec: DeploySpec, config_values: Mapping[str, str] | None = None
    ) -> Rollout:
        """Start `spec` in the free slot next to the stable version; return once it is healthy.

        It gets no traffic yet. If it never becomes healthy it is removed, and the stable
        version is untouched. `config_values` (read from `spec.config` by the caller) go into
        the container's environment; Relay's own variables win over them.
        """
        self.router.ensure_route(spec.route)
        stable = self.active(spec.app, spec.environment, spec.service)
        slot = SLOTS[1] if stable and stable.slot == SLOTS[0] else SLOTS[0]
        if stable is not None:
            # An interrupted rollout may have left traffic on the free slot: take it back first.
            self.router.set_weight(spec.service, {stable.slot: 100, slot: 0})
        new = self._start(spec, slot, config_values or {})
        self._wait_healthy(spec, slot, new)
        self.router.mark_healthy(spec.service, slot)
        return Rollout(spec=spec, slot=slot, container=str(new.name), stable=stable)

    def set_canary_weight(self, rollout: Rollout, percent: int) -> None:
        """Send `percent` of the traffic to the new version and the rest to the stable one."""
        if not 0 <= percent <= 100:
            raise ValueError(f"a canary weight is a percentage 0..100, got {percent}")
        if rollout.stable is None:
            self.switch(rollout)
            return
        self.router.set_weight(
            rollout.spec.service, {rollout.slot: percent, rollout.stable.slot: 100 - percent}
        )

    def switch(self, rollout: Rollout) -> None:
        """All traffic to the new version."""
        self.router.set_weight(
            rollout.spec.service, {rollout.slot: 100, **_others(rollout.slot, 0)}
        )

    def stop_previous(self, rollout: Rollout) -> None:
        """Remove the previous version's container, unless its slot serves traffic again (a
        later deploy may have reused the slot in the meantime)."""
        if rollout.stable is None:
            return
        if self.router.weights(rollout.spec.service).get(rollout.stable.slot, 0) > 0:
            return
        self._remove(rollout.stable.container_id)

    def abort(self, rollout: Rollout) -> None:
        """Back to the stable version at once, then remove the new one.

        The weights change first (microseconds, through the runtime API), so no request waits
        for the new container to stop.
        """
        if rollout.stable is not None:
            self.router.set_weight(
                rollout.spec.service, {rollout.stable.slot: 100, rollout.slot: 0}
            )
        else:
            self.router.set_weight(rollout.spec.service, {slot: 0 for slot in SLOTS})
        self._remove(rollout.container)

    def deploy(
        self, spec: DeploySpec, config_values: Mapping[str, str] | None = None
    ) -> DeployResult:
        """The rolling strategy in one call: start, switch when healthy, stop the old one."""
        current = self.serves(spec)
        if current is not None:
            return DeployResult(
                current.slot, current.name, str(spec.image), spec.public_url, False, current.image
            )
        rollout = self.start_new(spec, config_values)
        self.switch(rollout)
        self.stop_previous(rollout)
        return rollout.result()

    # -- the previous version, kept for an instant switch back ------------------------------

    def keep_previous(self, rollout: Rollout, seconds: float) -> Kept | None:
        """Leave the previous version running without traffic for `seconds`, noted so that
        `switch_back` can find it and `stop_kept` stop it; None when there is none (a
        first deploy) or nowhere to note it (then it is stopped now)."""
        if rollout.stable is None:
            return None
        if self.kept_dir is None:
            self.stop_previous(rollout)
            return None
        spec = rollout.spec
        kept = Kept(
            app=spec.app,
            environment=spec.environment,
            service=spec.service,
            slot=rollout.stable.slot,
            container=rollout.stable.name,
            container_id=rollout.stable.container_id,
            image=rollout.stable.image,
            until=(datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(),
        )
        path = self._kept_path(spec.app, spec.environment, spec.service)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(kept)))
        return kept

    def kept(self, app: str, environment: str, service: str) -> Kept | None:
        """The kept previous version, if its window is open and it still runs without
        traffic in its slot."""
        if self.kept_dir is None:
            return None
        path = self._kept_path(app, environment, service)
        try:
            kept = Kept(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if kept.expired:
            return None
        running = [
            r
            for r in self.running(app, environment, service)
            if r.container_id == kept.container_id and r.status == "running" and r.slot == kept.slot
        ]
        return kept if running else None

    def switch_back(self, spec: DeploySpec, kept: Kept) -> DeployResult:
        """All traffic back to the kept version, through the router alone; then the version
        that served is removed. `spec` is the service's spec for the kept image.

        Raises:
            StageFailed: the kept version does not answer its health check; nothing changed.
        """
        health = f"http://127.0.0.1:{spec.route.slots[kept.slot]}{spec.route.health}"
        if not health_ok(health):
            raise StageFailed(
                f"{spec.service}: the kept version ({kept.image}) does not answer {health}; "
                "nothing was switched"
            )
        serving = self.active(spec.app, spec.environment, spec.service)
        self.router.mark_healthy(spec.service, kept.slot)
        self.router.set_weight(spec.service, {kept.slot: 100, **_others(kept.slot, 0)})
        self._forget(spec.app, spec.environment, spec.service)
        if serving is not None and serving.slot != kept.slot:
            self._remove(serving.container_id)
        return DeployResult(
            kept.slot,
            kept.container,
            kept.image,
            spec.public_url,
            True,
            serving.image if serving is not None else None,
        )

    def stop_kept(self, kept: Kept) -> bool:
        """Stop a kept version (its window closed), unless it serves again (switched back to):
        either way it is no longer kept. True when a container was removed."""
        self._forget(kept.app, kept.environment, kept.service, only=kept)
        if self._weights(kept.service).get(kept.slot, 0) > 0:
            return False
        return self._remove(kept.container_id)

    def _weights(self, service: str) -> dict[str, int]:
        try:
            return self.router.weights(service)
        except RelayError:
            return {}

    def _kept_path(self, app: str, environment: str, service: str) -> Path:
        if self.kept_dir is None:
            raise RuntimeError("this platform keeps no previous versions (no home)")
        return self.kept_dir / f"{app}--{environment}--{service}.json"

    def _forget(self, app: str, environment: str, service: str, only: Kept | None = None) -> None:
        """Drop the service's note; with `only`, just when it still names that kept version
        (a later deploy may have noted another one meanwhile)."""
        if self.kept_dir is None:
            return
        path = self._kept_path(app, environment, service)
        if only is not None:
            try:
                if Kept(**json.loads(path.read_text())) != only:
                    return
            except (OSError, ValueError, TypeError):
                return
        path.unlink(missing_ok=True)

    def _start(self, spec: DeploySpec, slot: str, config_values: Mapping[str, str]) -> Container:
        name = container_name(spec.app, spec.environment, spec.service, slot)
        # A leftover of an interrupted deploy, or the previous version kept after a switch:
        # never the serving one. Its window ends with it.
        self._remove(name)
        self._forget(spec.app, spec.environment, spec.service)
        port = spec.route.slots[slot]
        try:
            # docker's stubs leave "unless-stopped" out of the restart policies it takes.
            container: Container = self.client.containers.run(  # type: ignore[call-overload]
                str(spec.image),
                name=name,
                detach=True,
                init=True,
                network_mode="host",
                environment={
                    **config_values,
                    **spec.env,
                    "RELAY_CONFIG_KEYS": ",".join(config_values),
                    "PORT": str(port),
                    "HOST": "127.0.0.1",
                },
                labels=_labels(spec, slot),
                read_only=True,
                tmpfs={"/tmp": "size=64m"},  # noqa: S108 (a container's private tmpfs)
                security_opt=["no-new-privileges"],
                cap_drop=["ALL"],
                # A restarted engine starts it again with the same labels, so what served
                # before serves again and the labels still say what it is.
                restart_policy={"Name": "unless-stopped"},
                log_config=_log_config(spec, name),
            )
            return container
        except APIError as exc:
            raise TransientError(f"could not start {name}: {exc.explanation}") from exc

    def _wait_healthy(self, spec: DeploySpec, slot: str, container: Container) -> None:
        url = f"http://127.0.0.1:{spec.route.slots[slot]}{spec.route.health}"
        deadline = time.monotonic() + spec.health_timeout
        while time.monotonic() < deadline:
            if health_ok(url, timeout=1.0):
                return
            container.reload()
            # With a restart policy a crash shows as restarts, not always as "exited".
            if container.status in {"exited", "dead"} or container.attrs.get("RestartCount"):
                break
            time.sleep(0.2)
        logs = container.logs(tail=30).decode(errors="replace")
        self._remove(str(container.name))
        raise StageFailed(
            f"{spec.service} ({spec.image}) never answered {url} within "
            f"{spec.health_timeout:.0f} s; the previous version keeps serving.\n"
            f"Last container output:\n{logs}"
        )

    def _remove(self, name_or_id: str) -> bool:
        """Stop and remove a container; False when there was none."""
        try:
            container = self.client.containers.get(name_or_id)
        except NotFound:
            return False
        with contextlib.suppress(APIError):
            container.stop(timeout=10)
        with contextlib.suppress(NotFound):
            container.remove(force=True)
        return True

    def remove_all(self, app: str, environment: str) -> int:
        """Remove every container of an application environment (tests and teardown)."""
        filters: dict[str, str | list[str] | bool] = {
            "label": [f"{LABEL}.app={app}", f"{LABEL}.env={environment}"]
        }
        containers = self.client.containers.list(all=True, filters=filters)
        for c in containers:
            c.remove(force=True)
        return len(containers)
