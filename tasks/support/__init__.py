"""Not stages: what tasks and flows share.

`retry` (the one retry option: only transient failures), `tracing` (OpenTelemetry set-up, the
attributes and spans Relay adds), `notify` (notifications through a Prefect block, and the hook
that reports a failed run) and `logs` (the hook that ships a finished run's lines to CloudWatch
Logs). The stages themselves are the modules of `tasks/`.
"""
