"""Masking of secret values in log records and Relay's exception texts."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from relay import redaction
from relay.errors import StageFailed


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    redaction._forget_all()
    yield
    redaction._forget_all()


@pytest.fixture
def captured() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("relay-test-redaction")
    handler = Keep()
    logger.addHandler(handler)
    logger.propagate = False
    yield lines
    logger.removeHandler(handler)


def test_registered_values_are_masked_in_messages_arguments_and_tracebacks(
    captured: list[str],
) -> None:
    logger = logging.getLogger("relay-test-redaction")
    redaction.register(["hunter2-secret", "postgres://u:pw@db/x"])

    logger.warning("password is %s", "hunter2-secret")
    try:
        raise ValueError("could not connect to postgres://u:pw@db/x")
    except ValueError:
        logger.exception("failed")

    text = "\n".join(captured)
    assert "hunter2-secret" not in text and "postgres://u:pw@db/x" not in text
    assert f"ValueError: could not connect to {redaction.MASK}" in text
    assert "password is ********" in text


def test_without_registration_nothing_is_masked(captured: list[str]) -> None:
    redaction.register(["something-else"])
    logging.getLogger("relay-test-redaction").warning("value %s", "hunter2-secret")

    assert captured == ["value hunter2-secret"]


def test_a_longer_value_containing_a_shorter_one_is_masked_whole() -> None:
    redaction.register(["abcd", "abcdefgh"])

    assert redaction.redact("x abcdefgh y abcd") == f"x {redaction.MASK} y {redaction.MASK}"


def test_very_short_values_are_not_masked() -> None:
    redaction.register(["1", "on"])

    assert redaction.redact("port 1 is on") == "port 1 is on"


def test_relay_errors_mask_what_they_quote() -> None:
    redaction.register(["s3cr3t-value"])
    error = StageFailed("container said: DB_PASSWORD=s3cr3t-value")

    assert "s3cr3t-value" not in str(error)
    assert "s3cr3t-value" not in repr(error)
    assert f"DB_PASSWORD={redaction.MASK}" in str(error)
