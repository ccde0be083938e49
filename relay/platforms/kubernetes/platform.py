"""The `kubernetes` platform: a service as Deployments, Services, a Secret and a NetworkPolicy,
moved by the same steps as the docker platform (`relay.strategies` plans, run by
`flows/strategies/execute.py`).

How each strategy maps onto the cluster (the *track* is where the new version runs):

- rolling: a rolling update of `<svc>` moves the traffic as new pods get ready; the switch is
  a no-op; stopping the previous version removes its unused Secret.
- blue_green: the free color, `<svc>-blue` or `<svc>-green`, which `<svc>-preview` selects;
  the switch points the Service `<svc>` at it; the previous color keeps its pods, marked as
  kept until a time (`keep_previous`), so a rollback points the Service back at it
  (`switch_back`) without starting a pod; after that it is scaled to 0 (`stop_kept`, or the
  next deploy, which reuses the color).
- canary: `<svc>-canary` takes traffic step by step; the switch updates `<svc>` to the new
  version, then sends all traffic there; `<svc>-canary` is scaled to 0.

Canary traffic is split by a Gateway API HTTPRoute when its CRD is installed (exact weights),
otherwise by the replica ratio of `<svc>` and `<svc>-canary` (coarse); `KubeRollout.traffic`
says which, and the deploy task logs it.

What runs is read from the cluster, not from memory: a Deployment's annotations carry its
image, commit, tree and secret versions, and the Service's selector says which color serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from relay.aws.secrets import SecretVersion, ServiceConfig
from relay.errors import RolledBack, StageFailed, TerminalError
from relay.platforms.docker import DeployResult
from relay.platforms.kubernetes import objects
from relay.platforms.kubernetes.cluster import Cluster
from relay.platforms.kubernetes.objects import (
    COLORS,
    KEEP_UNTIL,
    MANAGER,
    PREFIX,
    ClusterAccess,
    KubeSpec,
    Obj,
    deployment_name,
    service_url,
)
from relay.platforms.kubernetes.rollout import progress, wait_rollout
from relay.registry import ImageRef
from relay.traffic import (
    AlbIngress,
    HttpRoute,
    Pods,
    TrafficRouter,
    alb,
    gateway_api,
    make_router,
    replica_ratio,
)
from relay.traffic.gateway_api import canary_pods

# How canary traffic is split, or (other strategies) how traffic reaches the new version.
SERVICE_SELECTOR = "service_selector"
ROLLING_UPDATE = "rolling_update"
ALL_STABLE = {"stable": 100, "canary": 0}


@dataclass(frozen=True)
class Version:
    """One track's Deployment as the cluster reports it."""

    deployment: str
    track: str
    image: str
    commit: str
    tree: str
    config: str  # ServiceConfig.label of the secrets it runs with
    config_keys: str
    release: str
    replicas: int
    available: int
    keep_until: str = ""  # blue/green's kept previous color: kept until then (ISO, UTC)

    @property
    def name(self) -> str:
        return self.deployment

    @property
    def kept(self) -> bool:
        """Marked as kept, and its window still open."""
        return bool(self.keep_until) and datetime.fromisoformat(self.keep_until) > datetime.now(UTC)

    @property
    def slot(self) -> str:
        return self.track


@dataclass(frozen=True)
class KubeRollout:
    """A new version started next to the stable one (None on a first deployment)."""

    spec: KubeSpec
    track: str
    stable: Version | None
    traffic: str  # gateway_api | alb | replica_ratio | service_selector | rolling_update

    @property
    def slot(self) -> str:
        return self.track

    @property
    def slot_url(self) -> str:
        """The new version itself, for smoke tests (from inside the cluster)."""
        name = {"canary": f"{self.spec.service}-canary"}.get(self.track, self.spec.service)
        if self.track in COLORS:
            name = f"{self.spec.service}-preview"
        return service_url(name, self.spec.namespace, self.spec.port)

    def result(self) -> DeployResult:
        return DeployResult(
            self.track,
            deployment_name(self.spec.service, "stable" if self.track == "canary" else self.track),
            str(self.spec.image),
            self.spec.url,
            True,
            self.stable.image if self.stable else None,
        )


@dataclass(frozen=True)
class Serving:
    """A service's serving Deployment as the cluster has it."""

    deployment: str
    image: str  # what its pods run
    set_by_relay: str  # what Relay applied; differs after a hand edit

    @property
    def edited_by_hand(self) -> bool:
        return bool(self.set_by_relay) and self.image != self.set_by_relay


# Routers that set exact weights on a route (the canary gets capacity in proportion first).
EXACT = frozenset({gateway_api.TYPE, alb.TYPE})


def _version(deployment: Obj) -> Version:
    meta = deployment["metadata"]
    notes = meta.get("annotations") or {}
    return Version(
        deployment=meta["name"],
        track=meta["labels"].get(f"{PREFIX}/track", ""),
        image=notes.get(f"{PREFIX}/image", ""),
        commit=notes.get(f"{PREFIX}/commit", ""),
        tree=notes.get(f"{PREFIX}/tree", ""),
        config=notes.get(f"{PREFIX}/config", ""),
        config_keys=notes.get(f"{PREFIX}/config-keys", ""),
        release=notes.get(f"{PREFIX}/release", ""),
        replicas=deployment["spec"].get("replicas", 0),
        available=deployment.get("status", {}).get("availableReplicas", 0) or 0,
        keep_until=notes.get(KEEP_UNTIL, ""),
    )


@dataclass(frozen=True)
class KubeKept:
    """A note of a kept previous color, for the scheduled stop (`stop-kept-versions`), which
    has no manifest: where the cluster is, and the Deployment as it is to be once stopped."""

    app: str
    environment: str
    service: str
    namespace: str
    track: str
    image: str
    until: str  # ISO 8601, UTC: as the Deployment's keep-until annotation says
    access: dict[str, str | None] = field(default_factory=dict)
    stopped: dict[str, Any] = field(default_factory=dict)  # the Deployment at 0 replicas

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.until) <= datetime.now(UTC)

    @property
    def cluster(self) -> ClusterAccess:
        return ClusterAccess(**self.access)


def kube_kept_versions(home: Path) -> list[KubeKept]:
    """Every kept color noted under `home`, expired or not; unreadable notes are skipped."""
    found = []
    for path in sorted((home / "kept-kubernetes").glob("*.json")):
        try:
            found.append(KubeKept(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return found


def note_kept(home: Path, kept: KubeKept) -> None:
    path = _note_path(home, kept.app, kept.environment, kept.service)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(kept)))


def forget_kept(
    home: Path, app: str, environment: str, service: str, only: KubeKept | None = None
) -> None:
    """Drop the service's note; with `only`, just when it still names that kept color (a later
    deploy may have noted another one meanwhile)."""
    path = _note_path(home, app, environment, service)
    try:
        if only is None or KubeKept(**json.loads(path.read_text())) == only:
            path.unlink()
    except (OSError, ValueError, TypeError):
        return


def _note_path(home: Path, app: str, environment: str, service: str) -> Path:
    return home / "kept-kubernetes" / f"{app}--{environment}--{service}.json"


def spec_of(spec: KubeSpec, version: Version) -> KubeSpec:
    """`spec` for an older version: the same service and settings, that version's image and
    secret versions (so its pod template, and ReplicaSet, are the ones it had)."""
    config = None
    if version.config:
        versions = tuple(SecretVersion(*part.rsplit("@", 1)) for part in version.config.split(","))
        keys = tuple(k for k in version.config_keys.split(",") if k)
        config = ServiceConfig(versions, keys)
    return replace(
        spec,
        image=ImageRef.parse(version.image),
        commit=version.commit,
        tree=version.tree,
        release=version.release,
        config=config,
    )


class KubernetesPlatform:
    """The step operations of `DockerPlatform`, on a cluster.

    Args:
        api_client: An authenticated client (see `tasks.kubernetes.cluster_client`).
        traffic: How canaries split traffic: "auto" (Gateway API when its HTTPRoute CRD is
            installed, else replica ratio), "gateway_api" or "replica_ratio".
    """

    type = "kubernetes"

    def __init__(self, api_client: ApiClient, traffic: str = "auto") -> None:
        self.cluster = Cluster(api_client)
        self.traffic = traffic

    def check_namespace(self, namespace: str, where: str) -> None:
        """The namespace exists: Relay does not create namespaces (their quotas, policies and
        access are the platform team's), so a missing one stops a release before any build.

        Raises:
            TerminalError: it does not exist, or the worker may not read it (`where` names
                the environment's setting in relay.yaml).
        """
        if self.cluster.get("v1", "Namespace", "", namespace) is None:
            raise TerminalError(
                f"{where}: namespace {namespace!r} does not exist in the cluster; create it "
                f"(kubectl create namespace {namespace}), or name an existing one: Relay "
                "does not create namespaces"
            )

    # -- what runs --------------------------------------------------------------------------

    def version(self, spec: KubeSpec, track: str) -> Version | None:
        found = self.cluster.get(
            "apps/v1", "Deployment", spec.namespace, deployment_name(spec.service, track)
        )
        return _version(found) if found else None

    def active(self, spec: KubeSpec) -> Version | None:
        """The version the service's Service sends (most of) the traffic to, if it serves."""
        track = self._serving_track(spec)
        current = self.version(spec, track) if track else None
        return current if current is not None and current.available > 0 else None

    def current(self, spec: KubeSpec) -> Version | None:
        """`Platform.current`: the active version."""
        return self.active(spec)

    def _serving_track(self, spec: KubeSpec) -> str | None:
        if spec.strategy != "blue_green":
            return "stable"
        found = self.cluster.get("v1", "Service", spec.namespace, spec.service)
        if found is None:
            return None
        return str(found["spec"].get("selector", {}).get(f"{PREFIX}/track", "")) or None

    def serving(self, namespace: str, app: str) -> dict[str, Serving]:
        """What each of `app`'s services in `namespace` runs, as the cluster has it: the image
        of the serving Deployment's pod template (which `kubectl set image` changes) beside the
        one Relay set (its annotation). For `relay status` and its drift."""
        found: dict[str, Serving] = {}
        selector = f"app.kubernetes.io/part-of={app},app.kubernetes.io/managed-by={MANAGER}"
        for deployment in self.cluster.list(
            "apps/v1", "Deployment", namespace, label_selector=selector
        ):
            labels = deployment["metadata"].get("labels") or {}
            service = labels.get("app.kubernetes.io/name", "")
            if not service or service in found:
                continue
            track = self._track_serving(namespace, service)
            serving = self.cluster.get(
                "apps/v1", "Deployment", namespace, deployment_name(service, track)
            )
            if serving is None or not serving["spec"].get("replicas"):
                continue
            containers = serving["spec"]["template"]["spec"]["containers"]
            notes = serving["metadata"].get("annotations") or {}
            found[service] = Serving(
                deployment=serving["metadata"]["name"],
                image=str(containers[0]["image"]),
                set_by_relay=notes.get(f"{PREFIX}/image", ""),
            )
        return found

    def _track_serving(self, namespace: str, service: str) -> str:
        """The track the service's Service selects (blue/green), else the stable one."""
        found = self.cluster.get("v1", "Service", namespace, service)
        selector = (found or {}).get("spec", {}).get("selector") or {}
        return str(selector.get(f"{PREFIX}/track") or "stable")

    def serves(self, spec: KubeSpec) -> Version | None:
        """The active version if it is exactly `spec` (image, secret versions, and every field
        Relay would write: a server-side dry run changes nothing), fully rolled out, with no
        canary left; else None, and the deployment goes ahead."""
        current = self.active(spec)
        if current is None or current.image != str(spec.image):
            return None
        if current.config != spec.config_label:
            return None
        if spec.strategy == "canary":
            canary = self.version(spec, "canary")
            if canary is not None and canary.replicas > 0:
                return None
        stored = self.cluster.get("apps/v1", "Deployment", spec.namespace, current.deployment)
        wanted = objects.deployment(spec, current.track, spec.replicas)
        if stored is None or not progress(stored).complete or self._changes(wanted, stored):
            return None
        self._apply_services(spec, self._traffic_kind(spec), current.track)
        return current

    def _changes(self, wanted: Obj, stored: Obj) -> bool:
        """Whether applying `wanted` would change `stored`'s spec (a server-side dry run, so
        both carry the server's defaults). Not the generation: a Deployment's also moves when
        only its annotations do, and the version annotations (commit, release) change with
        every release, also of a service whose image and settings did not."""
        dry = self.cluster.apply(wanted, dry_run=True)
        return bool(dry["spec"] != stored["spec"])

    # -- the steps strategies are made of -----------------------------------------------------

    def start_new(
        self, spec: KubeSpec, config_values: Mapping[str, str] | None = None
    ) -> KubeRollout:
        """Start `spec` next to the stable version; return once its rollout is complete.

        Blue/green: the free color, which only `<svc>-preview` selects. Canary (with a stable
        version): `<svc>-canary`, at no traffic through a Gateway API route (by replica ratio
        it serves about 1/(replicas+1) at once). Rolling, and a first canary: a rolling update
        of `<svc>`. A rollout that stalls is undone here (the previous ReplicaSet serves
        again) and the error says why, from the Deployment's conditions and the pods.
        """
        stable = self.active(spec)
        traffic = self._traffic_kind(spec)
        if spec.config is not None:
            self.cluster.apply(objects.secret(spec, config_values or {}))
        self.cluster.apply(objects.network_policy(spec))
        if spec.strategy == "blue_green":
            track = COLORS[1] if stable is not None and stable.track == COLORS[0] else COLORS[0]
        elif spec.strategy == "canary" and stable is not None:
            track = "canary"
        else:
            track, traffic = "stable", ROLLING_UPDATE
        self._apply_services(spec, traffic, stable.track if stable else None)
        if track in COLORS:  # a color kept for a switch back is reused: no longer kept
            self._mark(spec.namespace, deployment_name(spec.service, track), None)
        rollout = KubeRollout(spec, track, stable, traffic)
        replicas = 1 if track == "canary" else spec.replicas
        stall = self._roll(spec, track, replicas)
        if stall is not None:
            self._undo_start(rollout)
            if stable is None:
                raise StageFailed(f"{spec.service} ({spec.image}) never became ready: {stall}")
            raise RolledBack(
                f"{spec.service} ({spec.image}) never became ready: {stall}; rolled back, "
                f"{stable.image} serves ({stable.available} available)"
            )
        if track in COLORS:
            self.cluster.apply(objects.service(spec, f"{spec.service}-preview", track))
        return rollout

    def set_canary_weight(self, rollout: KubeRollout, percent: int) -> int:
        """About `percent` of traffic to the canary; returns the share it really gets (exact
        with the Gateway API, the pods' share by replica ratio)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"a canary weight is a percentage 0..100, got {percent}")
        if rollout.stable is None or rollout.track != "canary":
            self.switch(rollout)
            return 100
        spec = rollout.spec
        if rollout.traffic in EXACT:
            self._scale_new(rollout, canary_pods(spec.replicas, percent))  # capacity first
        router = self._router(rollout)
        router.set_weight(spec.service, {"stable": 100 - percent, "canary": percent})
        return router.weights(spec.service).get("canary", percent)

    def switch(self, rollout: KubeRollout) -> None:
        """All traffic to the new version."""
        spec = rollout.spec
        if rollout.track in COLORS:
            self.cluster.apply(objects.service(spec, spec.service, rollout.track))
        elif rollout.track == "canary":
            # The stable Deployment becomes the new version; only then does traffic leave the
            # canary (the route), so no request waits for a pod that is not ready.
            stall = self._roll(spec, "stable", spec.replicas)
            if stall is not None:
                raise StageFailed(f"{spec.service}: updating {spec.service} stalled: {stall}")
            if rollout.traffic in EXACT:
                self._router(rollout).set_weight(spec.service, ALL_STABLE)

    def stop_previous(self, rollout: KubeRollout) -> None:
        """Scale the previous color (blue/green) or the canary to 0, unless the Service selects
        it again; then remove Secrets no Deployment of the service refers to."""
        spec = rollout.spec
        if rollout.track in COLORS and rollout.stable is not None:
            if self._serving_track(spec) != rollout.stable.track:
                self._apply_version(spec, rollout.stable, 0)
        elif rollout.track == "canary":
            self._scale_new(rollout, 0)
        self._remove_unused_secrets(spec)

    def abort(self, rollout: KubeRollout) -> None:
        """Back to the stable version: traffic first, then the new version scaled to 0."""
        spec, stable = rollout.spec, rollout.stable
        if rollout.track in COLORS:
            if stable is not None:
                self.cluster.apply(objects.service(spec, spec.service, stable.track))
                self.cluster.apply(objects.service(spec, f"{spec.service}-preview", stable.track))
            self._scale_new(rollout, 0)
        elif rollout.track == "canary":
            if rollout.traffic in EXACT:
                self._router(rollout).set_weight(spec.service, ALL_STABLE)
            self._undo_start(rollout)
        else:
            self._undo_start(rollout)

    # -- blue/green's kept previous color -------------------------------------------------------

    def keep_previous(self, rollout: KubeRollout, seconds: float) -> KubeKept | None:
        """Blue/green: leave the previous color with its pods, untouched and without traffic,
        marked as kept for `seconds` (an annotation), so that `switch_back` moves the Service's
        selector only; the deploy ends here (no wait, no lock held). None when there is no
        previous color (it is stopped now, as `stop_previous` would)."""
        spec, stable = rollout.spec, rollout.stable
        if stable is None or rollout.track not in COLORS or stable.track not in COLORS:
            self.stop_previous(rollout)
            return None
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
        self._mark(spec.namespace, stable.deployment, until)
        return KubeKept(
            app=spec.app,
            environment=spec.environment,
            service=spec.service,
            namespace=spec.namespace,
            track=stable.track,
            image=stable.image,
            until=until,
            access=asdict(spec.access),
            stopped=objects.deployment(spec_of(spec, stable), stable.track, 0),
        )

    def kept(self, spec: KubeSpec) -> Version | None:
        """The kept previous color: not selected by the Service, its window open, and all of
        its pods available (it is about to take all the traffic)."""
        if spec.strategy != "blue_green":
            return None
        serving = self._serving_track(spec)
        for track in COLORS:
            version = self.version(spec, track) if track != serving else None
            if (
                version is not None
                and version.kept
                and version.available >= max(1, version.replicas)
            ):
                return version
        return None

    def switch_back(self, spec: KubeSpec, kept: Version) -> DeployResult:
        """All traffic back to the kept color: the Service (and `-preview`) select it again;
        its Deployment is only unmarked, so no pod starts or changes; then the color that
        served is scaled to 0."""
        serving = self.active(spec)
        old = spec_of(spec, kept)
        self.cluster.apply(objects.service(old, spec.service, kept.track))
        self.cluster.apply(objects.service(old, f"{spec.service}-preview", kept.track))
        self._mark(spec.namespace, kept.deployment, None)
        if serving is not None and serving.track != kept.track:
            self._apply_version(spec, serving, 0)
        self._remove_unused_secrets(spec)
        return DeployResult(
            kept.track,
            kept.deployment,
            kept.image,
            spec.url,
            True,
            serving.image if serving is not None else None,
        )

    def stop_kept(self, kept: KubeKept) -> bool:
        """Scale a kept color to 0 once its window closed, unless it is no longer the kept
        one (switched back to, or reused by a later deploy: its mark differs or is gone) or
        serves. True when it was scaled down."""
        name = deployment_name(kept.service, kept.track)
        found = self.cluster.get("apps/v1", "Deployment", kept.namespace, name)
        if found is None or _version(found).keep_until != kept.until:
            return False
        service = self.cluster.get("v1", "Service", kept.namespace, kept.service)
        selected = (service or {}).get("spec", {}).get("selector", {}).get(f"{PREFIX}/track")
        if selected == kept.track:
            return False
        self.cluster.apply(kept.stopped)
        self._mark(kept.namespace, name, None)
        return True

    def _mark(self, namespace: str, deployment: str, until: str | None) -> None:
        """Mark a Deployment as kept until `until`, or (None) unmark it."""
        self.cluster.annotate("apps/v1", "Deployment", namespace, deployment, {KEEP_UNTIL: until})

    def deploy(
        self, spec: KubeSpec, config_values: Mapping[str, str] | None = None
    ) -> DeployResult:
        """The rolling plan in one call (tests and scripts): start, switch, stop."""
        current = self.serves(spec)
        if current is not None:
            return DeployResult(
                current.track, current.deployment, str(spec.image), spec.url, False, current.image
            )
        rollout = self.start_new(spec, config_values)
        self.switch(rollout)
        self.stop_previous(rollout)
        return rollout.result()

    # -- helpers ------------------------------------------------------------------------------

    def _traffic_kind(self, spec: KubeSpec) -> str:
        if spec.strategy == "blue_green":
            return SERVICE_SELECTOR
        if spec.strategy != "canary":
            return ROLLING_UPDATE
        chosen = spec.traffic if spec.traffic != "auto" else self.traffic
        if chosen != "auto":
            return chosen
        routes = self.cluster.serves(gateway_api.API_VERSION, gateway_api.KIND)
        return gateway_api.TYPE if routes else replica_ratio.TYPE

    def _apply_services(self, spec: KubeSpec, traffic: str, serving: str | None) -> None:
        """The Services (and route) each strategy needs; blue/green's `<svc>` keeps selecting
        the serving color (it is created at the first switch)."""
        if spec.strategy == "blue_green":
            if serving is not None:
                self.cluster.apply(objects.service(spec, spec.service, serving))
            return
        if traffic == replica_ratio.TYPE:
            self.cluster.apply(objects.service(spec, spec.service, None))
            # The canary's own Service: what its smoke tests call (KubeRollout.slot_url).
            self.cluster.apply(objects.service(spec, f"{spec.service}-canary", "canary"))
            return
        self.cluster.apply(objects.service(spec, spec.service, "stable"))
        if traffic in EXACT:
            for track in ("stable", "canary"):
                self.cluster.apply(objects.service(spec, f"{spec.service}-{track}", track))
            router = make_router(
                traffic, store=self.cluster, route=_http_route(spec), ingress=_alb_ingress(spec)
            )
            router.set_weight(spec.service, ALL_STABLE)  # an interrupted canary's taken back

    def _router(self, rollout: KubeRollout) -> TrafficRouter:
        """The router of a canary's traffic (`rollout.traffic`: gateway_api or replica_ratio)."""
        pods = Pods(
            rollout.spec.replicas,
            scale=partial(self._scale_track, rollout),
            replicas=partial(self._track_replicas, rollout),
        )
        route = _http_route(rollout.spec)
        ingress = _alb_ingress(rollout.spec)
        return make_router(
            rollout.traffic, store=self.cluster, route=route, pods=pods, ingress=ingress
        )

    def _scale_track(self, rollout: KubeRollout, track: str, replicas: int) -> None:
        if track == "canary":
            self._scale_new(rollout, replicas)
        else:
            self._scale_stable(rollout, replicas)

    def _track_replicas(self, rollout: KubeRollout, track: str) -> int:
        """The replicas a track's Deployment asks for (0 when it does not exist)."""
        if track == "canary":
            name = deployment_name(rollout.spec.service, rollout.track)
        elif rollout.stable is not None:
            name = rollout.stable.deployment
        else:
            return 0
        found = self.cluster.get("apps/v1", "Deployment", rollout.spec.namespace, name)
        return int(found["spec"].get("replicas", 0)) if found else 0

    def _roll(self, spec: KubeSpec, track: str, replicas: int) -> str | None:
        """Apply `spec` on `track` and wait for its rollout; None, or why it stalled."""
        self.cluster.apply(objects.deployment(spec, track, replicas))
        name = deployment_name(spec.service, track)
        return wait_rollout(self.cluster, spec.namespace, name, objects.version_of(str(spec.image)))

    def _scale_new(self, rollout: KubeRollout, replicas: int) -> None:
        stall = self._roll(rollout.spec, rollout.track, replicas) if replicas else None
        if not replicas:
            self.cluster.apply(objects.deployment(rollout.spec, rollout.track, 0))
        if stall is not None:
            raise StageFailed(f"{rollout.spec.service}: scaling the new version stalled: {stall}")

    def _scale_stable(self, rollout: KubeRollout, replicas: int) -> None:
        if rollout.stable is not None:
            self._apply_version(rollout.spec, rollout.stable, replicas)

    def _apply_version(self, spec: KubeSpec, version: Version, replicas: int) -> None:
        self.cluster.apply(objects.deployment(spec_of(spec, version), version.track, replicas))

    def _undo_start(self, rollout: KubeRollout) -> None:
        """Put the stable version back as it was; a first deployment is scaled to 0 (kept,
        with its pods' story, for debugging)."""
        spec, stable = rollout.spec, rollout.stable
        if rollout.track != "stable":
            self._scale_new(rollout, 0)
        if stable is None:
            if rollout.track == "stable":
                self.cluster.apply(objects.deployment(spec, "stable", 0))
            return
        if stable.track == "stable":
            # The previous template again: the controller scales the previous ReplicaSet back
            # up (it never went down: no pod of it is removed before a new one is ready).
            old = spec_of(spec, stable)
            self.cluster.apply(objects.deployment(old, "stable", spec.replicas))
            wait_rollout(self.cluster, spec.namespace, stable.deployment, "")

    def _remove_unused_secrets(self, spec: KubeSpec) -> None:
        pods = objects.selector(spec)
        labels = ",".join(f"{k}={v}" for k, v in pods.items())
        used = {
            ref["secretRef"]["name"]
            for dep in self.cluster.list(
                "apps/v1", "Deployment", spec.namespace, label_selector=labels
            )
            for container in dep["spec"]["template"]["spec"]["containers"]
            for ref in container.get("envFrom") or []
            if "secretRef" in ref
        }
        mine = f"{labels},app.kubernetes.io/managed-by={MANAGER}"
        for found in self.cluster.list("v1", "Secret", spec.namespace, label_selector=mine):
            if found["metadata"]["name"] not in used:
                self.cluster.delete("v1", "Secret", spec.namespace, found["metadata"]["name"])


def _http_route(spec: KubeSpec) -> HttpRoute:
    """The service's HTTPRoute for the gateway_api router, rendered by `objects.http_route`."""
    managed = f"app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/part-of={spec.app}"
    return HttpRoute(spec.namespace, spec.service, partial(objects.http_route, spec), managed)


def _alb_ingress(spec: KubeSpec) -> AlbIngress:
    """The service's Ingress for the alb router, rendered by `objects.alb_ingress`."""
    managed = f"app.kubernetes.io/managed-by={MANAGER},app.kubernetes.io/part-of={spec.app}"
    return AlbIngress(spec.namespace, spec.service, partial(objects.alb_ingress, spec), managed)
