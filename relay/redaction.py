"""Masking the secret values Relay has read, wherever its text goes.

Prefect masks only its own API key. Relay reads other secrets (Secrets Manager values, webhook
secrets, registry passwords), and text it does not write itself can carry them: a container's
last output in a health-check error, a test's captured output, a traceback. So every value is
registered here the moment it is read, and three places mask on the way out:

* `RedactingFilter` on the logging handlers (Prefect's API handler and the console): log
  messages and formatted tracebacks;
* `RelayError.__str__`: the text of Relay's own exceptions, which Prefect turns into a failed
  state's message;
* `redact` for anything else a caller publishes (artifacts, command output).

The registry is per process, which is where the values live: a worker process that reads a
secret also masks it. Values shorter than `MIN_LENGTH` are not masked: "1" or "on" would blank
out every number and word in the logs, and such values are not secrets anyone can protect by
masking.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["MASK", "MIN_LENGTH", "RedactingFilter", "install", "redact", "register"]

MASK = "********"
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(values: Iterable[str]) -> None:
    """Mask these values from now on in this process, and install the logging filter."""
    global _pattern
    fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH} - _values
    if not fresh:
        return
    with _lock:
        _values.update(fresh)
        # Longest first, so a value that contains another is masked whole.
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))
    install()


def redact(text: str) -> str:
    """`text` with every registered value replaced by `MASK`."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Masks registered values in a record's message and traceback before any handler
    formats it. Attached to handlers (not loggers), it sees records propagated from child
    loggers too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Attach the filter to every logging handler that exists now (idempotent)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in list(logging.root.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def _forget_all() -> None:
    """For tests: forget every registered value."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None
