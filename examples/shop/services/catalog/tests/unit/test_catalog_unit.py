"""catalog's logic, without a server. Imports Babel: these pass only where it is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "catalog_app", Path(__file__).resolve().parents[2] / "app.py"
)
assert _SPEC is not None and _SPEC.loader is not None
app = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(app)


@pytest.mark.parametrize(
    ("cents", "locale", "currency", "text"),
    [
        (1250, "en_US", "USD", "$12.50"),
        (120000, "en_US", "USD", "$1,200.00"),
        (4999, "de_DE", "EUR", "49,99\xa0€"),
    ],
)
def test_prices_are_written_for_people(cents: int, locale: str, currency: str, text: str) -> None:
    assert app.price_text(cents, locale, currency) == text


def test_every_product_is_listed_with_its_price() -> None:
    status, body = app.answer("/products", {})
    assert status == 200
    assert {p["sku"]: p["price"] for p in body} == {
        "widget": "$12.50",
        "gadget": "$49.99",
        "gizmo": "$1,200.00",
    }


def test_an_unknown_product_is_404() -> None:
    assert app.answer("/products/teapot", {})[0] == 404
