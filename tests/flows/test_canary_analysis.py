"""Canary analysis beside the stable version, on the real Docker engine and HAProxy under a
steady request load: a shared dependency's failures blame neither version, a canary worse than
the stable one by more than the relative limit is rolled back, every judged window is recorded,
and `relay analysis replay` judges the recorded windows again with other limits. The same canary
judged by CloudWatch metrics (GetMetricData on moto, with data the test puts there) is rolled
back when its metrics are bad, and is inconclusive, saying so, when there are none. Judged by
PromQL against the stack's Prometheus (which scrapes HAProxy's own exporter), a bad canary is
rolled back, a check comparing `{{canary}}` with `{{stable}}` fails a step by its limit, and a
Prometheus that does not answer is inconclusive, naming it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import docker
import httpx
import pytest
from prefect_docker import DockerHost

from deployments.cli import main
from flows.strategies import canary, rolling
from relay.analysis import Verdict
from relay.errors import RolledBack
from relay.ledger import Ledger
from relay.manifest import Analysis, Environment
from relay.platforms.docker import DeploySpec, DockerPlatform
from relay.settings import relay_database, relay_home
from relay.traffic import Route, make_router
from tests.echo import Load, echo_spec, make_image

pytestmark = pytest.mark.stack

APP = f"judge{uuid.uuid4().hex[:6]}"
PUBLIC = 23311
ROUTE = Route("echo", PUBLIC, {"blue": PUBLIC + 1, "green": PUBLIC + 2})
URL = f"http://127.0.0.1:{PUBLIC}/"
DEPENDENCY_PORT = 23320  # a "database" both versions call, served by the test


def environment(**limits: object) -> Environment:
    return Environment(
        port_offset=0,
        secrets="unused",
        strategy="canary",
        canary_steps=[20, 50, 100],
        analysis=Analysis.model_validate({"interval_seconds": 3, "min_requests": 10, **limits}),
    )


class Dependency:
    """A loopback HTTP server that fails every other request while `failing` is set."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            count = 0

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                Handler.count += 1
                status = 503 if owner.failing.is_set() and Handler.count % 2 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", DEPENDENCY_PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Dependency:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def dependency() -> Iterator[Dependency]:
    with Dependency() as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("analysis-images")
    repository = f"{os.environ['RELAY_REGISTRY']}/{APP}/echo"
    needs = f"http://127.0.0.1:{DEPENDENCY_PORT}/"
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        return {
            "v1": make_image(client, tmp, repository, "v1", dependency=needs),
            "v2": make_image(client, tmp, repository, "v2", dependency=needs),
            "mild": make_image(client, tmp, repository, "mild", fail_percent=3),
            "worse": make_image(client, tmp, repository, "worse", fail_percent=20),
        }


@pytest.fixture
def stable(images: dict[str, str], dependency: Dependency) -> Iterator[DockerHost]:
    """v1 serving, before each test; everything removed after it."""
    host = DockerHost()
    asyncio.run(rolling(host, spec(images["v1"]), environment(), False, None))
    yield host
    dependency.failing.clear()
    router = make_router("haproxy", name=f"{APP}-test", home=relay_home())
    with closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
        DockerPlatform(client, router).remove_all(APP, "test")
    router.remove_managed_routes()


def spec(image: str) -> DeploySpec:
    return echo_spec(APP, ROUTE, image)


def relay(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def latest_run(capsys: pytest.CaptureFixture[str]) -> str:
    """The run id `relay analysis` prints for the service's latest judged canary."""
    shown = relay(capsys, "analysis", "echo", "--env", "test", "--app", APP)
    return next(line.split()[1] for line in shown.splitlines() if line.startswith("run "))


def test_errors_of_a_shared_dependency_are_not_blamed_on_the_canary(
    stable: DockerHost, images: dict[str, str], dependency: Dependency
) -> None:
    dependency.failing.set()
    with Load(URL) as load, pytest.raises(RolledBack) as stopped:
        asyncio.run(canary(stable, spec(images["v2"]), environment(), True, None))
    message = str(stopped.value)
    assert "canary analysis inconclusive at 20%" in message, message
    assert "but so is the stable version's in the same window" in message
    assert "failed" not in message.split("inconclusive")[0], "the canary is not called failed"
    assert {"v1", "v2"} <= set(load.versions()), "both versions served in the window"
    [window] = Ledger(relay_database()).windows(APP, "test", "echo")
    assert window.verdict == Verdict.INCONCLUSIVE
    assert window.stable is not None and window.stable.errors > 0 < window.canary.errors


def test_a_canary_worse_than_stable_beyond_the_relative_limit_is_rolled_back_and_replayed(
    stable: DockerHost, images: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    relative = environment(max_error_rate=0.5, max_error_rate_increase=0.05)
    with Load(URL), pytest.raises(RolledBack, match="canary analysis failed at 20%") as stopped:
        asyncio.run(canary(stable, spec(images["worse"]), relative, True, None))
    assert "above the stable version's 0.0% in the same window" in str(stopped.value)

    run = latest_run(capsys)
    replayed = relay(capsys, "analysis", "replay", run[:8], "--max-error-rate-increase", "0.5")
    assert "would have passed the 1 step(s) recorded" in replayed, replayed
    assert "other 1 step(s) have no windows to judge" in replayed


def test_replay_with_stricter_limits_says_where_a_passed_canary_would_have_stopped(
    stable: DockerHost, images: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with Load(URL):
        result = asyncio.run(
            canary(stable, spec(images["mild"]), environment(max_error_rate=0.2), True, None)
        )
    assert result.image == images["mild"]
    run = latest_run(capsys)
    shown = relay(capsys, "analysis", "echo", "--env", "test", "--app", APP, "--run", run)
    assert shown.count("successful") == 2, shown

    same = relay(capsys, "analysis", "replay", run)
    assert "with these limits the canary passes all 2 step(s)" in same
    stricter = relay(capsys, "analysis", "replay", run, "--max-error-rate", "0.001")
    assert "the canary fails at step 1 (20%): error rate" in stricter, stricter


NAMESPACE = f"Relay/Test/{APP}"


def cloudwatch_environment() -> Environment:
    return environment(
        metrics="cloudwatch",
        cloudwatch_metrics={
            "namespace": NAMESPACE,
            "dimensions": {"TargetGroup": "{{service}}-{{environment}}-{{version}}"},
            "requests": "RequestCount",
            "errors": "HTTPCode_Target_5XX_Count",
            "response_time": "TargetResponseTime",
        },
    )


class Feeder:
    """Puts each version's request metrics into CloudWatch (moto) every half second, as a load
    balancer would: (requests, 5xx) per version."""

    def __init__(self, per_put: dict[str, tuple[int, int]]) -> None:
        self.per_put = per_put
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        client = boto3.client("cloudwatch")
        while not self.stop.wait(0.5):
            now = datetime.now(UTC)
            data = []
            for version, (requests, errors) in self.per_put.items():
                dimensions = [{"Name": "TargetGroup", "Value": f"echo-test-{version}"}]
                for name, value in (
                    ("RequestCount", requests),
                    ("HTTPCode_Target_5XX_Count", errors),
                    ("TargetResponseTime", 0.02),
                ):
                    data.append(
                        {
                            "MetricName": name,
                            "Dimensions": dimensions,
                            "Timestamp": now,
                            "Value": float(value),
                        }
                    )
            client.put_metric_data(Namespace=NAMESPACE, MetricData=data)


def test_a_canary_judged_by_cloudwatch_metrics_is_rolled_back_when_they_are_bad(
    stable: DockerHost, images: dict[str, str]
) -> None:
    with (
        Feeder({"canary": (10, 5), "stable": (40, 0)}),
        pytest.raises(RolledBack, match="canary analysis failed at 20%") as stopped,
    ):
        asyncio.run(canary(stable, spec(images["v2"]), cloudwatch_environment(), True, None))
    assert "error rate 50.0% is above the 5.0% limit" in str(stopped.value)
    [window] = Ledger(relay_database()).windows(APP, "test", "echo")
    assert window.stable is not None and window.stable.errors == 0 < window.stable.requests
    assert window.canary.requests >= 10 and window.canary.response_ms_total > 0


def test_no_cloudwatch_data_is_inconclusive_and_says_so(
    stable: DockerHost, images: dict[str, str]
) -> None:
    with pytest.raises(RolledBack, match="canary analysis inconclusive at 20%") as stopped:
        asyncio.run(canary(stable, spec(images["v2"]), cloudwatch_environment(), True, None))
    assert f"CloudWatch ({NAMESPACE}) has no request data for the canary" in str(stopped.value)


PROMETHEUS = os.environ.get("RELAY_PROMETHEUS_URL", "http://127.0.0.1:9095")


def prometheus_environment(**settings: object) -> Environment:
    return environment(metrics="prometheus", prometheus={"address": PROMETHEUS, **settings})


def scraped_series(query: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": query}, timeout=5)
    return list(answer.json()["data"]["result"])


@pytest.fixture
def scraped(stable: DockerHost) -> DockerHost:
    """The stable version serving, and its router scraped by Prometheus for good.

    Each test removes its router's target file and the next one writes it again; Prometheus
    applies each change up to ~5 s later (its discovery manager sends updates at most every
    5 s), so the old target may still be scraped for a moment, then dropped, then added back.
    A sample more than 6 s after the new file was written comes after both changes. A canary
    window in such a gap has no data, which is inconclusive (the last test here shows it),
    not what these tests judge."""
    settled = time.time() + 6
    query = f'timestamp(up{{router="{APP}-test"}} == 1) > {settled:.3f}'
    deadline = time.monotonic() + 30
    while not scraped_series(query):
        assert time.monotonic() < deadline, f"Prometheus did not scrape {APP}-test in 30 s"
        time.sleep(0.5)
    return stable


def test_a_canary_judged_by_promql_against_the_stacks_prometheus_is_rolled_back(
    scraped: DockerHost, images: dict[str, str]
) -> None:
    with Load(URL), pytest.raises(RolledBack, match="canary analysis failed at 20%") as stopped:
        asyncio.run(canary(scraped, spec(images["worse"]), prometheus_environment(), True, None))
    assert "error rate" in str(stopped.value) and "above the 5.0% limit" in str(stopped.value)
    [window] = Ledger(relay_database()).windows(APP, "test", "echo")
    assert window.canary.errors > 0 and window.canary.requests >= 10
    assert window.stable is not None and window.stable.requests > window.canary.requests
    # The figures came from Prometheus: it holds this app's HAProxy series, labelled by the
    # scrape target the router wrote.
    served = scraped_series(f'haproxy_server_http_responses_total{{app="{APP}",code="5xx"}}')
    assert {s["metric"]["environment"] for s in served} == {"test"}  # type: ignore[index]


def test_a_promql_check_comparing_canary_with_stable_fails_the_step_by_its_limit(
    scraped: DockerHost, images: dict[str, str]
) -> None:
    responses = 'haproxy_server_http_responses_total{app="{{app}}",server="{{%s}}"}'
    share = (
        f"sum(increase({responses % 'canary'}[{{{{window}}}}])) / "
        f"sum(increase({responses % 'stable'}[{{{{window}}}}]))"
    )
    check = {"name": "canary-share", "query": share, "max": 0.01}
    with Load(URL), pytest.raises(RolledBack, match="canary analysis failed at 20%") as stopped:
        asyncio.run(
            canary(scraped, spec(images["v2"]), prometheus_environment(checks=[check]), True, None)
        )
    reason = str(stopped.value)
    assert "check 'canary-share': 0." in reason and "is above its max 0.01" in reason, reason
    assert "error rate" not in reason, "the good version's own requests were within limits"


def test_a_prometheus_that_does_not_answer_is_inconclusive_and_named(
    stable: DockerHost, images: dict[str, str]
) -> None:
    nowhere = "http://127.0.0.1:9"  # discard: nothing listens there
    with pytest.raises(RolledBack, match="canary analysis inconclusive at 20%") as stopped:
        asyncio.run(
            canary(
                stable,
                spec(images["v2"]),
                environment(metrics="prometheus", prometheus={"address": nowhere}),
                True,
                None,
            )
        )
    assert f"Prometheus at {nowhere} could not be reached" in str(stopped.value)
