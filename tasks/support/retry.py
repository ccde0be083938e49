"""When a task's failure is worth another try: only for `TransientError` (the network, AWS
throttling, a registry restarting). A refusal, bad input or a red test fails the same way
twice, so no task retries them: every task that retries takes its options from `on_transient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.client.schemas.objects import State, TaskRun

from relay.errors import TransientError

__all__ = ["on_transient", "only_transient"]


def only_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False


def on_transient(
    retries: int, delays: float | Sequence[float], jitter: float | None = None
) -> dict[str, Any]:
    """A task's retry options: `retries` more tries after a TransientError only, waiting
    `delays` seconds (one number, or one per try), spread by `jitter` when several workers
    would otherwise retry at the same moment."""
    options: dict[str, Any] = {
        "retries": retries,
        "retry_delay_seconds": delays if isinstance(delays, int | float) else list(delays),
        "retry_condition_fn": only_transient,
    }
    if jitter is not None:
        options["retry_jitter_factor"] = jitter
    return options
