"""The gateway process itself: start-up checks, unreachable orders, SIGTERM."""

import signal
import time


def test_missing_orders_url_exits_2(spawn_service):
    service = spawn_service({}, wait=False)
    assert service.proc.wait(timeout=10) == 2
    assert "ORDERS_URL is not set" in service.log()


def test_unreachable_orders_is_502_but_healthz_stays_ok(spawn_service, closed_url, http):
    service = spawn_service({"ORDERS_URL": closed_url})
    assert http("GET", service.url + "/healthz").status == 200
    response = http("GET", service.url + "/api/orders/ord_1")
    assert response.status == 502 and "orders unreachable" in response.body["error"]
    assert response.headers["X-Request-Id"]


def test_stops_promptly_on_sigterm(spawn_service, closed_url):
    service = spawn_service({"ORDERS_URL": closed_url})
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2
