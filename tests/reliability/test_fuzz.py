"""Bad input, generated: relay.yaml documents and webhook deliveries (hypothesis).

- A manifest, however mangled, gives a ManifestError listing its problems (or a valid
  manifest), never another exception: a traceback is a bug in validation.
- A webhook request, however mangled, gets a 2xx or 4xx answer, never a 500, and starts no
  flow run (checked on the Prefect server, for a deployment in a work pool without a worker).
  The one 5xx allowed is the receiver's designed 502 "cannot fetch commit; redeliver" for a
  correctly signed push of a commit its repository does not have.

The documents are mutations of real ones (the example shop, GitHub's push sample), so the
fuzzer reaches the deep validators instead of failing at the first type check.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from pydantic import SecretStr

from deployments.webhooks import RepositoryTarget, WebhookSettings, create_app
from relay.errors import ManifestError
from relay.manifest import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop" / "relay.yaml"
PAYLOADS = ROOT.parent / "shared" / "webhook-payloads" / "github"
SECRET = "fuzz-webhook-secret"
REPOSITORY = "Codertocat/Hello-World"
BOUNDED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- relay.yaml ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["", "..", "/etc", "dev", "canary", "127.0.0.1:5000", "a b", "-1", "100"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*prefix, i))
    return found


BASE = yaml.safe_load(EXAMPLE.read_text())
PATHS = _paths(BASE)


@st.composite
def mangled_manifests(draw: st.DrawFn) -> Any:
    """The example manifest with 1-4 places replaced, deleted or given an extra key."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        if not path:
            return draw(values)  # the whole document
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or reshaped that place
    return doc


@BOUNDED
@given(mangled_manifests())
def test_a_mangled_manifest_gives_only_validation_errors(document: Any) -> None:
    try:
        parse_manifest(document, "relay.yaml")
    except ManifestError as error:
        assert error.problems and all(p.startswith("relay.yaml") for p in error.problems)


@BOUNDED
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_relay_yaml_give_only_validation_errors(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "relay.yaml"
    path.write_bytes(content)
    try:
        load_manifest(path, check_files=False)
    except ManifestError as error:
        assert error.problems


# -- webhooks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment() -> Iterator[uuid.UUID]:
    """A `release` deployment in a work pool that has no worker: a run would stay SCHEDULED."""
    from flows.release import release

    pool = f"fuzz-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment_id = release.to_deployment(name=pool, work_pool_name=pool).apply()
    yield deployment_id
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)
        client.delete_work_pool(pool)


def runs_of(deployment_id: uuid.UUID) -> int:
    with get_client(sync_client=True) as client:
        flow_filter = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
        return len(client.read_flow_runs(flow_run_filter=flow_filter))


@pytest.fixture(scope="module")
def receiver(
    deployment: uuid.UUID, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    shop = tmp_path_factory.mktemp("fuzzshop") / "shop"
    shutil.copytree(EXAMPLE.parent, shop, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(shop)], check=True)
    ident = ["-c", "user.name=Fuzz", "-c", "user.email=fuzz@example.invalid"]
    subprocess.run(["git", *ident, "-C", str(shop), "add", "-A"], check=True)
    subprocess.run(["git", *ident, "-C", str(shop), "commit", "-qm", "shop"], check=True)
    with get_client(sync_client=True) as client:
        name = client.read_deployment(deployment).name
    settings_ = WebhookSettings(
        github_secret=SecretStr(SECRET),
        gitlab_token=SecretStr(SECRET),
        repositories={REPOSITORY: RepositoryTarget(url=str(shop))},
        deployment=f"release/{name}",
        state_dir=tmp_path_factory.mktemp("fuzzstate"),
        max_body_bytes=20_000,
        dispatch_attempts=2,  # an unfetchable commit fails quickly
        dispatch_backoff_seconds=0.2,
    )
    with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
        yield client


def _push_sample() -> dict[str, Any]:
    path = PAYLOADS / "push.with-new-branch.payload.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {"ref": "refs/heads/x", "before": "0" * 40, "after": "1" * 40, "repository": {}}


PUSH = _push_sample()
PUSH_PATHS = _paths(PUSH)
EVENTS = st.sampled_from(["push", "pull_request", "ping", "issues", "", "push\n", "PUSH"])


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    """(route, headers, body): a GitHub push whose body, headers or signature are mangled, or
    a GitLab delivery with a wrong token; a push of a branch no environment lists is the
    best a valid one can be."""
    payload = copy.deepcopy(PUSH)
    payload["repository"] = {**payload.get("repository", {}), "full_name": REPOSITORY}
    payload["ref"] = draw(st.sampled_from(["refs/heads/fuzz-no-env", "refs/tags/v1", "main"]))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PUSH_PATHS))
        if not path:
            continue
        parent: Any = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue
    if str(payload.get("ref")).endswith(("develop", "main", "staging")):
        payload["ref"] = "refs/heads/fuzz-no-env"  # a listed branch would rightly start a run
    body = draw(
        st.one_of(
            st.just(json.dumps(payload).encode()),
            st.binary(max_size=200),
            st.just(b"x" * 30_000),  # over max_body_bytes
        )
    )
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": draw(EVENTS),
        "X-GitHub-Delivery": draw(st.sampled_from([str(uuid.uuid4()), "", "../x"])),
        "X-Hub-Signature-256": draw(
            st.sampled_from([signature, signature[:-1] + "0", "sha1=abc", "", signature.upper()])
        ),
        "Content-Type": draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        ),
    }
    headers = {k: v for k, v in headers.items() if v or draw(st.booleans())}
    route = draw(st.sampled_from(["/github", "/github", "/gitlab", "/nope"]))
    if route == "/gitlab":
        token = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10))
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}
    return route, headers, body


@pytest.mark.stack
@BOUNDED
@given(deliveries())
def test_a_mangled_webhook_gets_2xx_or_4xx_and_starts_no_run(
    receiver: TestClient, deployment: uuid.UUID, delivery: tuple[str, dict[str, str], bytes]
) -> None:
    route, headers, body = delivery
    response = receiver.post(route, headers=headers, content=body)
    assert 200 <= response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 202:  # a signed push, stored: it must never start a run
        assert response.json()["status"] == "queued", response.text
        QUEUED.append(response.json()["status_url"])


# The status URLs of the fuzzed deliveries that were queued (202), judged once all were sent.
QUEUED: list[str] = []


@pytest.mark.stack
def test_no_fuzzed_delivery_created_a_run_on_the_server(
    receiver: TestClient, deployment: uuid.UUID
) -> None:
    """Runs after the fuzzing (same module): every queued delivery was dispatched, each ended
    ignored (no environment listens to its branch) or failed (its commit does not exist), and
    the server holds no run of the deployment."""
    deadline = time.monotonic() + 120
    states: dict[str, str] = {}
    for url in QUEUED:
        while True:
            states[url] = receiver.get(url).json()["state"]
            if states[url] != "queued" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert set(states.values()) <= {"ignored", "failed"}, states
    assert runs_of(deployment) == 0
