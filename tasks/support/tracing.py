"""Traces: Prefect's own OpenTelemetry spans, exported over OTLP, with Relay's attributes.

Prefect 3.9 makes a span for every flow run and task run (`prefect.telemetry.run_telemetry`):
a release's subflows and tasks nest under it, across processes too (the trace context travels
in the run's `__OTEL_TRACEPARENT` label). It only uses the OpenTelemetry API, so nothing is
exported until a process installs an SDK tracer provider. `configure_tracing` does that from the
standard environment (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
OTEL_EXPORTER_OTLP_PROTOCOL `http/protobuf` (default) or `grpc`, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_SERVICE_NAME (default `relay`), OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED), once per
process, when `flows` is imported: before the first run span starts. A provider installed
already (e.g. by `opentelemetry-instrument prefect worker start`) is left alone.

Relay adds what a trace needs to be searched by: `relay_attributes` puts `relay.app`,
`relay.service`, `relay.environment`, `relay.commit`, `relay.digest`, `relay.strategy` and
`relay.release.id` (the release's id, `relay.releases`: the same in every environment it
reaches, and none for a run outside a release) on the current run's span,
and `platform_span` wraps the calls into platforms (`image push`, `traffic shift`) in spans of
their own, so their latency is visible apart from the task around them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

__all__ = [
    "ATTRIBUTE_PREFIX",
    "configure_tracing",
    "platform_span",
    "relay_attributes",
]

ATTRIBUTE_PREFIX = "relay."
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_tracer = trace.get_tracer("relay")


def configure_tracing() -> TracerProvider | None:
    """Install an SDK tracer provider exporting over OTLP, when an endpoint is configured.

    Returns the provider in use (new or already installed), or None when tracing is off: no
    endpoint, or OTEL_SDK_DISABLED=true. Safe to call again (e.g. once the environment is set).
    """
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not any(os.environ.get(name) for name in _ENDPOINTS):
        return None
    service = os.environ.get("OTEL_SERVICE_NAME", "relay")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)
    return provider


def _exporter() -> SpanExporter:
    """The OTLP exporter of OTEL_EXPORTER_OTLP_PROTOCOL; each reads its endpoint, headers,
    timeout and compression from the standard OTEL_* variables itself."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _attributes(values: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {
        f"{ATTRIBUTE_PREFIX}{name}": value
        for name, value in values.items()
        if value is not None and value != ""
    }


def relay_attributes(**values: AttributeValue | None) -> None:
    """Put `relay.<name>` attributes on the current span (a flow's or task's run span).
    Underscores in names become dots (`release_id` → `relay.release.id`); None is skipped."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(_attributes({k.replace("_", "."): v for k, v in values.items()}))


@contextmanager
def platform_span(name: str, **values: AttributeValue | None) -> Iterator[Span]:
    """A span around one call into a platform (registry, router), child of the current task's
    span, with `relay.*` attributes; an exception marks it failed and is re-raised."""
    attributes = _attributes({k.replace("_", "."): v for k, v in values.items()})
    with _tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span
