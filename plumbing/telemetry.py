"""OpenTelemetry tracing: one tracer provider per service, every span stamped with its owning tool.

Trace context crosses Kafka in W3C ``traceparent`` headers (FastStream's telemetry middleware) and HTTP
in the same headers (the FastAPI instrumentation). Spans go over OTLP/HTTP when an endpoint is set.
"""

import os
import secrets

from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.trace import SpanKind, StatusCode

from plumbing.identity import ServiceIdentity
from plumbing.redaction import RedactingSpanExporter

TOOL = "rxsm.tool"
STEP = "rxsm.step"
RENEWAL_ID = "rxsm.renewal_id"
EHR = "rxsm.ehr"
FAILED_TOOL = "rxsm.failed_tool"
ERROR_CODE = "rxsm.error_code"
TRACING = "tracing"
"""The broker context key of the service's TracerProvider (set by make_broker)."""
CONSUMER_GROUP = "messaging.consumer.group.name"
DESTINATION = "messaging.destination.name"
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"


def use_stable_http_semconv() -> None:
    """Opt the HTTP instrumentation in to OpenTelemetry's stable HTTP semantic conventions, unless the
    environment already chose an HTTP mode: requests are then timed by ``http.server.request.duration``
    in seconds (Prometheus: ``http_server_request_duration_seconds``, labelled by ``http_route``),
    not by the legacy ``http.server.duration`` in milliseconds, which Prometheus' linter refuses
    (an operator's ``http/dup`` keeps both while dashboards move).
    The instrumentation reads the choice once per process, so this runs before the first app is
    instrumented (``ServiceMetrics`` calls it)."""
    chosen = [
        mode for mode in os.environ.get(SEMCONV_OPT_IN, "").replace(" ", "").split(",") if mode
    ]
    if not {"http", "http/dup"} & set(chosen):
        os.environ[SEMCONV_OPT_IN] = ",".join([*chosen, "http"])


class ToolAttributeProcessor(SpanProcessor):
    """Stamps ``rxsm.tool`` on every span the service starts, so each span says whose tool it is."""

    def __init__(self, identity: ServiceIdentity) -> None:
        self._tool = str(identity.tool)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attribute(TOOL, self._tool)

    def on_end(self, span: ReadableSpan) -> None:
        return None


class SystemRandomIdGenerator(IdGenerator):
    """Trace and span ids from the operating system's randomness. OpenTelemetry's default draws them
    from the ``random`` module, which any library (or a test framework) may seed: two requests would
    then share a trace id."""

    def generate_span_id(self) -> int:
        return _nonzero(64)

    def generate_trace_id(self) -> int:
        return _nonzero(128)


def _nonzero(bits: int) -> int:
    while True:
        value = secrets.randbits(bits)
        if value:
            return value


def tracer_provider(
    identity: ServiceIdentity,
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """The service's tracer provider; ``exporter`` (tests) is called synchronously on each span end."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"rxsm-{identity.name}", TOOL: str(identity.tool)}
        ),
        id_generator=SystemRandomIdGenerator(),
    )
    provider.add_span_processor(ToolAttributeProcessor(identity))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exporter)))
    if otlp_endpoint:
        otlp = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(otlp)))
    return provider


def annotate(step: str, renewal_id: object = None, ehr: object = None) -> None:
    """Name the flow step (and the renewal and EHR, when known) on the current span."""
    span = trace.get_current_span()
    span.set_attribute(STEP, step)
    if renewal_id is not None:
        span.set_attribute(RENEWAL_ID, str(renewal_id))
    if ehr is not None:
        span.set_attribute(EHR, str(ehr))


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def record_failure(error_type: str, tool: object, code: str | None = None) -> None:
    """Mark the current span failed: ``error.type``, the tool that owns the failure, its code."""
    span = trace.get_current_span()
    span.set_status(StatusCode.ERROR, code or error_type)
    span.set_attribute("error.type", error_type)
    span.set_attribute(FAILED_TOOL, str(tool))
    if code:
        span.set_attribute(ERROR_CODE, code)


def record_span(tracing: TracerProvider, record: ConsumerRecord, group: str) -> trace.Span:
    """A ``process`` span for one record of a batch, started as a child of the span that produced
    the record (its W3C ``traceparent`` header), so a renewal's trace runs through a batch
    unbroken. The caller ends it (``trace.use_span(span, end_on_exit=True)``)."""
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    return tracing.get_tracer("rxsm").start_span(
        f"{record.topic} process",
        context=propagate.extract(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            SpanAttributes.MESSAGING_SYSTEM: "kafka",
            SpanAttributes.MESSAGING_OPERATION: "process",
            DESTINATION: record.topic,
            CONSUMER_GROUP: group,
            SpanAttributes.MESSAGING_KAFKA_DESTINATION_PARTITION: record.partition,
            SpanAttributes.MESSAGING_KAFKA_MESSAGE_OFFSET: record.offset,
            SpanAttributes.MESSAGING_MESSAGE_ID: f"{record.offset}-{record.timestamp}",
        },
    )
