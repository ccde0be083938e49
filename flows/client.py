"""One Prefect client per flow run for its tasks.

Relay's flows are `async def` and its tasks plain functions: the flows because Prefect's sync
flow engine waits up to a second on exit for its heartbeat thread (every flow and subflow run,
41 of them in a 20-service release), the tasks because their work is blocking (Docker, git,
subprocesses, boto3) and reads best as such. A sync task run inside an async flow, though,
finds no sync client in its context and opens one of its own, and a new client costs ~25 ms
of TLS set-up even for an http:// API (PrefectHQ/prefect#14986). Each flow therefore runs its
body inside `one_client_for_tasks()`, Prefect's own `SyncClientContext` (a subflow reuses its
caller's), and every task reuses that client: the fastest form bench/overhead.py measured.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from prefect.context import SyncClientContext


def one_client_for_tasks() -> AbstractContextManager[SyncClientContext]:
    return SyncClientContext.get_or_create()
