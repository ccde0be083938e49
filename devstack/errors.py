"""The one error the stack raises: what could not be started or stopped, and what to do."""

from __future__ import annotations


class StackError(RuntimeError):
    """A stack component could not be started or stopped; the message says what to do."""
