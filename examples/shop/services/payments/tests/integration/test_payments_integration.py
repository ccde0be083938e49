"""Against the running payments service at PAYMENTS_URL (skipped when it is not set)."""

import pytest

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


@pytest.fixture
def payments(service_url):
    return service_url("payments")


def test_healthz(http, payments):
    response = http("GET", f"{payments}/healthz")
    assert (response.status, response.body) == (200, {"status": "ok"})


def test_version(http, payments):
    response = http("GET", f"{payments}/version")
    assert response.status == 200
    assert response.body["service"] == "payments"
    assert isinstance(response.body["version"], str) and response.body["version"]


def test_charge_succeeds(http, payments):
    response = http("POST", f"{payments}/charge", {"amount_cents": 1999, "card": GOOD_CARD})
    assert response.status == 200, response.body
    assert response.body["charged"] is True
    assert response.body["payment_id"].startswith("pay_")
    assert response.body["amount_cents"] == 1999
    assert GOOD_CARD not in str(response.body)


def test_each_charge_gets_its_own_payment_id(http, payments):
    ids = {
        http("POST", f"{payments}/charge", {"amount_cents": 1, "card": GOOD_CARD}).body[
            "payment_id"
        ]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_declined_card_is_402(http, payments):
    response = http("POST", f"{payments}/charge", {"amount_cents": 1999, "card": DECLINED_CARD})
    assert response.status == 402
    assert response.body["error"] == "card declined"


@pytest.mark.parametrize("amount", [0, -100, "100", None])
def test_non_positive_or_non_integer_amount_is_400(http, payments, amount):
    response = http("POST", f"{payments}/charge", {"amount_cents": amount, "card": GOOD_CARD})
    assert response.status == 400 and "amount_cents" in response.body["error"]


def test_bad_card_is_400(http, payments):
    response = http("POST", f"{payments}/charge", {"amount_cents": 100, "card": "12"})
    assert response.status == 400 and "card" in response.body["error"]


def test_bad_json_is_400(http, payments):
    response = http("POST", f"{payments}/charge", raw=b"{")
    assert response.status == 400 and "error" in response.body


def test_wrong_method_is_405(http, payments):
    response = http("GET", f"{payments}/charge")
    assert response.status == 405 and response.headers["Allow"] == "POST"
