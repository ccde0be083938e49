"""HAProxyRouter against a real HAProxy with two real HTTP backends on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.errors import TerminalError
from relay.traffic.haproxy import HAProxyRouter, Route

BASE = 23100  # this module's ports: 23100-23199 (below the ephemeral range)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802
        body = self.server.color.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """HAProxy's health checks close connections abruptly; that is not an error here."""


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    servers = {}
    for color, port in (("blue", BASE + 1), ("green", BASE + 2)):
        server = _Server(("127.0.0.1", port), _Handler)
        server.color = color  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[color] = server
    yield {"blue": BASE + 1, "green": BASE + 2}
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def router(short_tmp: Path) -> Iterator[HAProxyRouter]:
    router = HAProxyRouter(name="test-haproxy", home=short_tmp)
    yield router
    router.remove_managed_routes()


def hits(port: int, n: int = 100) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            counts[response.read().decode()] += 1
    return counts


def test_weights_switch_and_split_traffic(router: HAProxyRouter, backends: dict[str, int]) -> None:
    router.ensure_route(Route("web", BASE, backends))
    router.mark_healthy("web", "blue")
    router.mark_healthy("web", "green")

    router.set_weight("web", {"blue": 100, "green": 0})
    assert hits(BASE) == Counter({"blue": 100})

    router.set_weight("web", {"blue": 90, "green": 10})
    split = hits(BASE, 200)
    assert 10 <= split["green"] <= 30, split
    assert router.verify_weight("web", {"blue": 90, "green": 10}) is True

    router.set_weight("web", {"blue": 0, "green": 100})
    assert hits(BASE) == Counter({"green": 100})


def test_adding_a_route_reloads_without_losing_weights(
    router: HAProxyRouter, backends: dict[str, int]
) -> None:
    router.ensure_route(Route("web", BASE, backends))
    router.mark_healthy("web", "green")
    router.set_weight("web", {"blue": 0, "green": 100})
    first_pid = router.pid()

    router.ensure_route(Route("api", BASE + 10, {"blue": BASE + 11, "green": BASE + 12}))

    assert router.pid() != first_pid, "a new frontend needs a reload"
    assert router.weights("web") == {"blue": 0, "green": 100}
    assert hits(BASE, 20) == Counter({"green": 20})


def test_same_route_again_does_not_reload(router: HAProxyRouter, backends: dict[str, int]) -> None:
    router.ensure_route(Route("web", BASE, backends))
    pid = router.pid()
    router.ensure_route(Route("web", BASE, backends))
    assert router.pid() == pid


def test_unknown_slot_is_refused(router: HAProxyRouter, backends: dict[str, int]) -> None:
    router.ensure_route(Route("web", BASE, backends))
    with pytest.raises(ValueError, match="slot 'purple' is not one of blue, green"):
        router.set_weight("web", {"purple": 10})


def test_per_slot_statistics_count_what_each_slot_served(
    router: HAProxyRouter, backends: dict[str, int]
) -> None:
    router.ensure_route(Route("web", BASE, backends))
    router.mark_healthy("web", "blue")
    router.mark_healthy("web", "green")
    router.set_weight("web", {"blue": 50, "green": 50})
    served = hits(BASE, 40)
    stats = router.stats("web")
    assert set(stats) == {"blue", "green"}
    for slot in ("blue", "green"):
        assert int(stats[slot]["hrsp_2xx"]) == served[slot]


def test_a_home_too_long_for_the_admin_socket_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match="shorter RELAY_HOME"):
        HAProxyRouter(name="test-haproxy", home=tmp_path / ("x" * 100))


class _DroppingServer(threading.Thread):
    """Accepts each connection, reads the request, and closes without an answer: what a
    container killed mid-request looks like to HAProxy. Counts the requests it read."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.requests: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(4096).decode(errors="replace")
                except OSError:
                    continue
                method = head.split(" ", 1)[0]
                if method and not head.startswith("OPTIONS") and "/healthz" not in head:
                    self.requests.append(method)
                if "/healthz" in head:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.sock.close()


class _PostHandler(_Handler):
    posts = 0

    def do_POST(self) -> None:  # noqa: N802
        _PostHandler.posts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_a_request_the_server_never_answered_is_sent_again_only_if_idempotent(
    router: HAProxyRouter,
) -> None:
    """A canary that dies with requests inside it: GETs are answered by the other slot,
    a POST (maybe already processed) is not sent twice and gets HAProxy's 502."""
    dropping = _DroppingServer(BASE + 11)
    dropping.start()
    good = _Server(("127.0.0.1", BASE + 12), _PostHandler)
    good.color = "green"  # type: ignore[attr-defined]
    threading.Thread(target=good.serve_forever, daemon=True).start()
    try:
        router.ensure_route(Route("drop", BASE + 10, {"blue": BASE + 11, "green": BASE + 12}))
        router.mark_healthy("drop", "blue")
        router.mark_healthy("drop", "green")
        router.set_weight("drop", {"blue": 50, "green": 50})

        assert hits(BASE + 10, 20) == Counter({"green": 20})
        assert dropping.requests.count("GET") >= 5, dropping.requests

        statuses: Counter[int] = Counter()
        _PostHandler.posts = 0
        for _ in range(20):
            request = urllib.request.Request(
                f"http://127.0.0.1:{BASE + 10}/pay", data=b"{}", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    statuses[response.status] += 1
            except urllib.error.HTTPError as exc:
                statuses[exc.code] += 1
        dropped = dropping.requests.count("POST")
        assert dropped >= 5 and statuses[502] == dropped, (statuses, dropped)
        assert _PostHandler.posts == statuses[200] == 20 - dropped
    finally:
        dropping.stop()
        good.shutdown()
        good.server_close()


def test_each_router_serves_its_counters_to_prometheus_and_names_itself_a_target(
    short_tmp: Path, backends: dict[str, int]
) -> None:
    router = HAProxyRouter(
        name="shop-dev", home=short_tmp, labels={"app": "shop", "environment": "dev"}
    )
    try:
        router.ensure_route(Route("web", BASE, backends))
        router.mark_healthy("web", "blue")
        router.set_weight("web", {"blue": 100, "green": 0})
        hits(BASE, 7)
        [target] = json.loads(router.target_file.read_text())
        assert target["labels"] == {"router": "shop-dev", "app": "shop", "environment": "dev"}
        [address] = target["targets"]
        url = f"http://{address}/metrics?scope=server"
        with urllib.request.urlopen(url, timeout=5) as response:
            exported = response.read().decode()
        served = 'haproxy_server_http_responses_total{proxy="be_web",server="blue",code="2xx"} 7'
        assert served in exported
        # The port is kept: a reload for a new service serves the exporter where it was.
        router.ensure_route(Route("api", BASE + 10, backends))
        assert json.loads(router.target_file.read_text()) == [target]
        with urllib.request.urlopen(url, timeout=5) as response:
            assert 'proxy="be_api"' in response.read().decode()
    finally:
        router.remove_managed_routes()
    assert not router.target_file.exists(), "a removed router is no longer a target"


def test_an_exporter_port_taken_while_haproxy_was_down_is_replaced(
    short_tmp: Path, backends: dict[str, int]
) -> None:
    router = HAProxyRouter(name="shop-dev", home=short_tmp)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        router.metrics_port_file.parent.mkdir(parents=True, exist_ok=True)
        router.metrics_port_file.write_text(str(taken))  # kept from before, now someone else's
        try:
            router.ensure_route(Route("web", BASE, backends))
            [target] = json.loads(router.target_file.read_text())
            assert target["targets"] == [f"127.0.0.1:{router.metrics_port()}"]
            assert router.metrics_port() != taken
        finally:
            router.remove_managed_routes()
