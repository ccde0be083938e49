"""When a task's failure is worth another try: only for `TransientError` (the network, AWS
throttling, a registry restarting). A refusal or a red test fails the same way twice."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State, TaskRun

from relay.errors import TransientError


def only_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False
