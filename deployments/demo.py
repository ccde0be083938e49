"""`relay demo`: the example shop from its first commit to production, and a bad release
caught by the canary.

1. v1 of every service: the release goes to dev (build, tests), staging (same digests, e2e),
   prod (approved).
2. payments v2 with a bug that only large charges hit: its release passes dev and staging
   (only payments differs, so only payments is deployed), and the production canary rolls it
   back at its first step under real traffic.
3. payments v3, fixed: the same path, and the canary takes it to 100%.

The approvals are answered by the demo itself (`--auto-approve` semantics, printed), through
the same Prefect resume API the UI uses. Production traffic is simulated by a bounded load
loop on 127.0.0.1 while production changes.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from blocks.aws import aws_client
from deployments.approvals import auto_approving
from deployments.register import register_deployments
from deployments.releases import releases_report
from devstack.demo import commit_change, sync_repository
from relay.discovery import service_urls
from relay.errors import RelayError
from relay.manifest import Manifest, load_manifest

APPROVER = "demo-approver"
BUG = (
    '    card = normalize_card(body.get("card"))\n',
    '    card = normalize_card(body.get("card"))\n'
    "    risk = 5_000 / (5_000 - min(amount, 5_000))  # v2 fraud check: crashes from $50 up\n",
)
FIX = (
    "    risk = 5_000 / (5_000 - min(amount, 5_000))  # v2 fraud check: crashes from $50 up\n",
    "    risk = amount / 5_000  # v3 fraud check: no division by zero\n",
)


class ProductionTraffic:
    """Requests to every production service while it changes: GET /version everywhere and
    POST /charge to payments with amounts from $9.99 to $120. Bounded in time."""

    AMOUNTS = (999, 1999, 4999, 7500, 12000)

    def __init__(self, urls: dict[str, str], max_seconds: float = 600) -> None:
        self.urls = urls
        self.max_seconds = max_seconds
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProductionTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # Random, not round-robin: a strictly periodic load against HAProxy's (deterministic)
        # weighted round-robin can send the canary only one kind of request.
        chooser = random.Random()  # noqa: S311 (traffic shape, not security)
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            name, url = chooser.choice(list(self.urls.items()))
            if name == "PAYMENTS_URL" and chooser.random() < 0.7:
                body = {"amount_cents": chooser.choice(self.AMOUNTS), "card": "4242424242424242"}
                self._send(f"{url}/charge", body)
            else:
                self._send(f"{url}/version")
            time.sleep(0.002)

    def _send(self, url: str, body: dict[str, object] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback)
                self.statuses[response.status] += 1
        except urllib.error.HTTPError as exc:
            self.statuses[exc.code] += 1
        except OSError:
            self.statuses[0] += 1


def _ensure_config_secrets(manifest: Manifest) -> None:
    """Each environment's configuration secret in the stack's Secrets Manager (moto), created
    the first time with a greeting and a generated API key; never printed."""
    client = aws_client("secretsmanager")
    for name, env in manifest.environments.items():
        if env.secrets is None:
            continue
        config = {"GREETING": f"hello from {name}", "PAYMENTS_API_KEY": secrets.token_hex(16)}
        with contextlib.suppress(client.exceptions.ResourceExistsException):
            client.create_secret(Name=env.secrets, SecretString=json.dumps(config))
            print(f"created the configuration secret {env.secrets} (GREETING, PAYMENTS_API_KEY)")


def run_demo(example: Path, repo: Path, prefect_ui: str) -> int:
    sha = sync_repository(example, repo, "Shop v1")
    manifest = load_manifest(repo / "relay.yaml")
    prod = service_urls(manifest, "prod")
    _ensure_config_secrets(manifest)
    register_deployments(str(repo))
    print("registered the deployments of prefect.yaml; runs go server → work pool → worker")
    demo = _Demo(str(repo), prefect_ui)

    print(f"\n== 1/3 the shop at {sha[:12]}: dev → staging → prod ({repo})")
    demo.run("release/release", commit=sha)
    demo.run("promote/promote", commit=sha, environment="staging")
    with ProductionTraffic(prod):
        demo.run("promote/promote", commit=sha, environment="prod", approver=APPROVER)

    print("\n== 2/3 payments v2: a fraud check that crashes on charges from $50 up")
    base, sha = sha, commit_change(repo, "services/payments/app.py", *BUG, "Payments v2: fraud")
    demo.run("release/release", commit=sha, base=base)
    demo.run("promote/promote", commit=sha, environment="staging")
    with ProductionTraffic(prod) as traffic:
        run = demo.run(
            "promote/promote",
            commit=sha,
            environment="prod",
            approver=APPROVER,
            expect_failure=True,
        )
    if "RolledBack" not in (run.state.message or ""):
        print(f"UNEXPECTED: the buggy payments v2 was not rolled back: {run.state.message}")
        return 1
    print(f"canary rolled back, as it should: {run.state.message}")
    print(f"client responses during it: {dict(traffic.statuses)}")

    print("\n== 3/3 payments v3: the fix, through the same gates")
    base, sha = sha, commit_change(repo, "services/payments/app.py", *FIX, "Payments v3: fix")
    demo.run("release/release", commit=sha, base=base)
    demo.run("promote/promote", commit=sha, environment="staging")
    with ProductionTraffic(prod) as traffic:
        demo.run(
            "promote/promote",
            commit=sha,
            environment="prod",
            approver=APPROVER,
        )
    print(f"client responses during the canary: {dict(traffic.statuses)}")

    print("\n== the nightly end-to-end run (scheduled at 02:00 UTC), started by hand once")
    demo.run("nightly-e2e/nightly-e2e")
    return _summary(repo, prefect_ui)


class _Demo:
    """Starts deployment runs and waits for them, as the UI or a webhook would start them."""

    def __init__(self, repository: str, prefect_ui: str) -> None:
        self.repository = repository
        self.ui = prefect_ui

    def run(
        self,
        deployment: str,
        approver: str | None = None,
        expect_failure: bool = False,
        **parameters: object,
    ) -> FlowRun:
        if deployment != "nightly-e2e/nightly-e2e":
            parameters = {"repository": self.repository, **parameters}
        run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
        with auto_approving(approver, run_id=run.id) if approver else contextlib.nullcontext():
            run = _wait(run.id)
        state = run.state.name if run.state else "?"
        print(f"  {deployment:28} {state:10} {self.ui}/runs/flow-run/{run.id}")
        if not expect_failure and (run.state is None or not run.state.is_completed()):
            message = run.state.message if run.state else ""
            raise RelayError(f"{deployment} did not complete: {message}")
        return run


def _wait(run_id: UUID, timeout: float = 1800) -> FlowRun:
    """Until the run is final (bounded), as `run_deployment(timeout=None)` would."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                raise RelayError(f"flow run {run_id} did not finish within {timeout:.0f} s")
            time.sleep(1)


def _summary(repo: Path, prefect_ui: str) -> int:
    manifest = load_manifest(repo / "relay.yaml")
    print(f"\nPrefect UI: {prefect_ui}")
    failures = 0
    for environment in manifest.environments:
        print(f"{environment}:")
        for name, url in service_urls(manifest, environment).items():
            try:
                with urllib.request.urlopen(f"{url}/version", timeout=5) as response:  # noqa: S310
                    version = str(json.load(response).get("version"))[:12]
            except OSError as exc:
                version, failures = f"DOWN ({exc})", failures + 1
            print(f"  {name.removesuffix('_URL').lower():10} {url}  /version={version}")
    print(f"\nreleases of {manifest.app}:\n{releases_report(manifest.app)}")
    print(
        f"\n`.venv/bin/relay status --app {manifest.app}`, `relay history payments --app "
        f"{manifest.app}` and `relay diff staging prod --app {manifest.app}` show the ledger "
        f"(in the repository, {manifest.root}, --app comes from its relay.yaml)."
    )
    return 1 if failures else 0
