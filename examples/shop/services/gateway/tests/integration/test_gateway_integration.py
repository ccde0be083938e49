"""Against the running gateway (GATEWAY_URL) and the real orders behind it (skipped if unset)."""

import re

import pytest

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def gateway(service_url):
    return service_url("gateway")


def test_healthz(http, gateway):
    response = http("GET", f"{gateway}/healthz")
    assert (response.status, response.body) == (200, {"status": "ok"})
    assert REQUEST_ID.fullmatch(response.headers["X-Request-Id"])


def test_version(http, gateway):
    response = http("GET", f"{gateway}/version")
    assert response.status == 200 and response.body["service"] == "gateway"


def test_order_round_trip(http, gateway):
    placed = http(
        "POST", f"{gateway}/api/orders", {"sku": "widget", "quantity": 1, "card": GOOD_CARD}
    )
    assert placed.status == 201, placed.body
    assert REQUEST_ID.fullmatch(placed.headers["X-Request-Id"])
    order_id = placed.body["order_id"]

    read_back = http("GET", f"{gateway}/api/orders/{order_id}")
    assert read_back.status == 200
    assert read_back.body == placed.body
    assert read_back.headers["X-Request-Id"] != placed.headers["X-Request-Id"]


def test_client_request_id_is_replaced(http, gateway):
    response = http("GET", f"{gateway}/healthz", headers={"X-Request-Id": "client-chosen"})
    assert response.headers["X-Request-Id"] != "client-chosen"


@pytest.mark.parametrize(
    ("order", "status"),
    [
        ({"sku": "widget", "quantity": 1, "card": DECLINED_CARD}, 402),
        ({"sku": "gizmo", "quantity": 1, "card": GOOD_CARD}, 409),
        ({"sku": "sprocket", "quantity": 1, "card": GOOD_CARD}, 404),
        ({"sku": "widget", "quantity": 0, "card": GOOD_CARD}, 400),
    ],
)
def test_order_errors_pass_through(http, gateway, order, status):
    response = http("POST", f"{gateway}/api/orders", order)
    assert response.status == status, response.body
    assert "error" in response.body


def test_bad_json_is_400(http, gateway):
    response = http("POST", f"{gateway}/api/orders", raw=b"[1]")
    assert response.status == 400


def test_unknown_order_is_404(http, gateway):
    assert http("GET", f"{gateway}/api/orders/ord_doesnotexist").status == 404


def test_unknown_route_is_404(http, gateway):
    response = http("GET", f"{gateway}/api/stock/widget")
    assert response.status == 404 and "error" in response.body
