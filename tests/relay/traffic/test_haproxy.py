"""HAProxyRouter against a real HAProxy with two real HTTP backends on loopback."""

from __future__ import annotations

import http.server
import threading
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
