"""Pure logic of the payments service: no network, no server."""

import json

import payments_app as app
import pytest


def test_http_contract_of_the_handler():
    assert app.Handler.protocol_version == "HTTP/1.1"
    assert app.Handler.disable_nagle_algorithm is True
    assert app.HOST == "127.0.0.1"
    assert app.DEFAULT_PORT == 8004


def test_route():
    assert app.route("GET", "/healthz") == ("healthz", {})
    assert app.route("GET", "/version") == ("version", {})
    assert app.route("POST", "/charge") == ("charge", {})
    with pytest.raises(app.HttpError) as err:
        app.route("GET", "/charge")
    assert err.value.status == 405
    with pytest.raises(app.HttpError) as err:
        app.route("POST", "/refund")
    assert err.value.status == 404


@pytest.mark.parametrize("amount", [0, -1, "100", 1.5, True, None, app.MAX_AMOUNT_CENTS + 1])
def test_validate_amount_rejects(amount):
    with pytest.raises(app.HttpError) as err:
        app.validate_amount(amount)
    assert err.value.status == 400


def test_validate_amount_accepts_positive_int():
    assert app.validate_amount(1) == 1
    assert app.validate_amount(app.MAX_AMOUNT_CENTS) == app.MAX_AMOUNT_CENTS


def test_normalize_card():
    assert app.normalize_card("4242 4242-4242 4242") == "4242424242424242"


@pytest.mark.parametrize("card", [None, 4242424242424242, "", "4242", "4242abcd42424242", "1" * 20])
def test_normalize_card_rejects(card):
    with pytest.raises(app.HttpError) as err:
        app.normalize_card(card)
    assert err.value.status == 400


def test_is_declined():
    assert app.is_declined("4000000000000002")
    assert not app.is_declined("4242424242424242")
    assert not app.is_declined("4000000000000020")


def test_decide_charge_approves():
    status, body = app.decide_charge({"amount_cents": 1999, "card": "4242424242424242"}, "pay_1")
    assert status == 200
    assert body == {
        "charged": True,
        "payment_id": "pay_1",
        "amount_cents": 1999,
        "card_last4": "4242",
    }


def test_decide_charge_declines_card_ending_0002():
    status, body = app.decide_charge({"amount_cents": 500, "card": "4000000000000002"}, "pay_2")
    assert status == 402
    assert body["charged"] is False and body["error"] == "card declined"
    assert "payment_id" not in body


def test_decide_charge_validates_before_declining():
    with pytest.raises(app.HttpError) as err:
        app.decide_charge({"amount_cents": 0, "card": "4000000000000002"}, "pay_3")
    assert err.value.status == 400


def test_full_card_number_never_in_answer():
    for card in ("4242424242424242", "4000000000000002"):
        _, body = app.decide_charge({"amount_cents": 100, "card": card}, "pay_4")
        assert card not in json.dumps(body)


def test_payment_ids_are_unique():
    assert len({app.new_payment_id() for _ in range(100)}) == 100


def test_app_handlers():
    handlers = app.App({"GIT_SHA": "deadbeef"})
    assert handlers.healthz({}, b"", None) == (200, {"status": "ok"})
    assert handlers.version({}, b"", None) == (200, {"service": "payments", "version": "deadbeef"})
    status, body = handlers.charge({}, b'{"amount_cents": 10, "card": "4242424242424242"}', None)
    assert status == 200 and body["payment_id"].startswith("pay_")
    with pytest.raises(app.HttpError) as err:
        handlers.charge({}, b"nope", None)
    assert err.value.status == 400
