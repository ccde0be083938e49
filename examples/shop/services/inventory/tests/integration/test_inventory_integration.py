"""Against the running inventory service at INVENTORY_URL (skipped when it is not set).

Stock is in memory and shared with whatever else runs in the environment, so these tests compare
before/after rather than assuming absolute numbers.
"""

import http.client
import json
from urllib.parse import urlsplit

import pytest


@pytest.fixture
def inventory(service_url):
    return service_url("inventory")


def stock(http, inventory, sku):
    response = http("GET", f"{inventory}/stock/{sku}")
    assert response.status == 200, response.body
    return response.body["available"]


def test_healthz(http, inventory):
    response = http("GET", f"{inventory}/healthz")
    assert (response.status, response.body) == (200, {"status": "ok"})
    assert response.headers["Content-Type"] == "application/json"


def test_version(http, inventory):
    response = http("GET", f"{inventory}/version")
    assert response.status == 200
    assert response.body["service"] == "inventory"
    assert isinstance(response.body["version"], str) and response.body["version"]


def test_stock_of_known_sku(http, inventory):
    response = http("GET", f"{inventory}/stock/widget")
    assert response.status == 200
    assert response.body["sku"] == "widget"
    assert isinstance(response.body["available"], int) and response.body["available"] >= 0


def test_reserve_lowers_stock_and_release_restores_it(http, inventory):
    before = stock(http, inventory, "widget")
    reserved = http("POST", f"{inventory}/reserve", {"sku": "widget", "quantity": 1})
    assert reserved.status == 200, reserved.body
    assert reserved.body["reserved"] is True
    assert stock(http, inventory, "widget") == before - 1

    released = http(
        "POST", f"{inventory}/release", {"reservation_id": reserved.body["reservation_id"]}
    )
    assert released.status == 200 and released.body["released"] is True
    assert stock(http, inventory, "widget") == before

    again = http(
        "POST", f"{inventory}/release", {"reservation_id": reserved.body["reservation_id"]}
    )
    assert again.status == 404 and "error" in again.body


def test_insufficient_stock_is_409(http, inventory):
    available = stock(http, inventory, "gadget")
    if available >= 100:
        pytest.skip("gadget stock too high for a reservation over the limit")
    response = http("POST", f"{inventory}/reserve", {"sku": "gadget", "quantity": available + 1})
    assert response.status == 409 and "insufficient" in response.body["error"]
    assert stock(http, inventory, "gadget") == available


def test_out_of_stock_item_is_409(http, inventory):
    response = http("POST", f"{inventory}/reserve", {"sku": "gizmo", "quantity": 1})
    assert response.status == 409


def test_unknown_sku_is_404(http, inventory):
    assert http("GET", f"{inventory}/stock/sprocket").status == 404
    response = http("POST", f"{inventory}/reserve", {"sku": "sprocket", "quantity": 1})
    assert response.status == 404 and "unknown sku" in response.body["error"]


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"sku": "widget", "quantity": 0}', b'{"sku": "widget"}']
)
def test_bad_body_is_400(http, inventory, raw):
    response = http("POST", f"{inventory}/reserve", raw=raw)
    assert response.status == 400 and "error" in response.body


def test_unknown_endpoint_and_wrong_method(http, inventory):
    missing = http("GET", f"{inventory}/nope")
    assert missing.status == 404 and "error" in missing.body
    wrong = http("GET", f"{inventory}/reserve")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"


def test_request_id_is_echoed(http, inventory):
    response = http("GET", f"{inventory}/healthz", headers={"X-Request-Id": "it-inventory-1"})
    assert response.headers["X-Request-Id"] == "it-inventory-1"


def test_keep_alive_connection_serves_several_requests(inventory):
    """HTTP/1.1 with Content-Length: one connection, several requests, errors included."""
    parts = urlsplit(inventory)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        for path, expected in [("/healthz", 200), ("/stock/sprocket", 404), ("/version", 200)]:
            connection.request("GET", path)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == expected, body
            assert response.version == 11
            assert response.getheader("Content-Length") is not None
            assert not response.will_close
    finally:
        connection.close()
