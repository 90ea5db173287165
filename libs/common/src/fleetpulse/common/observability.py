"""Logs, traces and metrics: JSON logs with trace ids, OpenTelemetry when an OTLP endpoint is set.

``traceparent`` travels in SQS/SNS message attributes, MQTT user properties and event metadata, so
one alert is one trace from reading to webhook: :func:`inject_context` writes the current context
into a carrier dict and :func:`extract_context` reads it back.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_trace_fields(record))
        entry.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _RESERVED and not k.startswith("otel")
            }
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _trace_fields(record: logging.LogRecord) -> dict[str, str]:
    """Trace and span id: as the logging instrumentation captured them when the record was
    made, else from the span active now."""
    trace_id = getattr(record, "otelTraceID", "0")
    if trace_id != "0":
        return {"trace_id": trace_id, "span_id": str(getattr(record, "otelSpanID", ""))}
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": f"{span_context.trace_id:032x}", "span_id": f"{span_context.span_id:016x}"}


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "aiobotocore", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_telemetry(
    service: str, otlp_endpoint: str | None, traces_file: str | None = None
) -> None:
    """Install the SDK when spans go somewhere: OTLP/HTTP to ``otlp_endpoint`` (traces and
    metrics) and/or one JSON object per finished span appended to ``traces_file``. Then the
    OpenTelemetry contrib instrumentations are switched on (asyncpg queries, aiohttp client
    requests, which carry ``traceparent``, and trace ids on log records). With neither, the no-op
    API stays and nothing is instrumented, so hot paths pay nothing."""
    if not otlp_endpoint and not traces_file:
        return
    resource = Resource.create({"service.name": service})
    tracer_provider = TracerProvider(resource=resource)
    if otlp_endpoint:
        _add_otlp(tracer_provider, resource, otlp_endpoint.rstrip("/"))
    if traces_file:
        tracer_provider.add_span_processor(BatchSpanProcessor(_file_exporter(traces_file)))
    trace.set_tracer_provider(tracer_provider)
    instrument_libraries()


def _add_otlp(tracer_provider: TracerProvider, resource: Resource, base: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(f"{base}/v1/metrics"))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def _file_exporter(path: str) -> SpanExporter:
    """The SDK's console exporter writing compact JSON lines to ``path`` (appended; each span is
    one write, so several processes can share the file)."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed at exit
    return ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")


def instrument_libraries() -> None:
    """asyncpg, aiohttp client and logging instrumentations (idempotent)."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    for instrumentor in (AsyncPGInstrumentor(), AioHttpClientInstrumentor()):  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    logging_instrumentor = LoggingInstrumentor()
    if not logging_instrumentor.is_instrumented_by_opentelemetry:
        # only the record attributes (otelTraceID, ...); JsonFormatter keeps the log format
        logging_instrumentor.instrument(set_logging_format=False)


def shutdown_telemetry() -> None:
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def meter(name: str) -> metrics.Meter:
    return metrics.get_meter(name)


def inject_context(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    out: dict[str, str] = dict(carrier or {})
    inject(out)
    return out


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    return extract(dict(carrier or {}))
