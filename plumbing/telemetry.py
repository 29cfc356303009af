"""OpenTelemetry tracing: one tracer provider per service, every span stamped with its owning tool.

Trace context crosses Kafka in W3C ``traceparent`` headers (``producer_span`` writes them,
``record_span`` reads them: one span per record per hop) and HTTP in the same headers (the FastAPI
instrumentation).

Which spans leave the process: a trace is kept whole or not at all (``trace_sampler``, a parent-based
ratio); spans of a trace not kept are still recorded, so one that ends in error leaves alone
(``leaving``). Spans go over OTLP/HTTP when an endpoint is set, through a queue whose drops are counted
(``SpanExport``, ``span_drops``).

PHI stays out of spans where their attributes are set, not by scanning them on the way out: rxsm's
setters take ids, codes and names of steps only (``annotate``, ``record_failure``, ``record_span``,
``producer_span``); rxsm records no exception messages; and ``leaving`` exports the FastAPI server
span without the request's URL (its route template stays) and any recorded exception as its type
alone.
"""

import os
import secrets
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Final
from uuid import UUID
from weakref import WeakKeyDictionary

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from plumbing.identity import ServiceIdentity
from plumbing.settings import SamplerName, TracingSettings
from schemas.vocabulary import Ehr

TOOL = "rxsm.tool"
STEP = "rxsm.step"
RENEWAL_ID = "rxsm.renewal_id"
EHR = "rxsm.ehr"
FAILED_TOOL = "rxsm.failed_tool"
ERROR_CODE = "rxsm.error_code"
ERROR_TYPE = "error.type"
TRACING = "tracing"
"""The broker context key of the service's TracerProvider (set by make_broker)."""
CONSUMER_GROUP = "messaging.consumer.group.name"
DESTINATION = "messaging.destination.name"
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

W3C: Final = TraceContextTextMapPropagator()
"""Kafka headers carry the W3C trace context alone: no baggage, whatever a caller put in it."""
TRACE_HEADERS: Final = frozenset(W3C.fields)


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


class RecordUnsampled(Sampler):
    """``sampler``'s decisions, but a span it would drop is recorded (not sampled, so not exported
    and its trace context says so downstream): a span processor can still export it if it ends in
    error (``leaving``)."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordUnsampled{{{self._sampler.get_description()}}}"


def _named_sampler(name: SamplerName, ratio: float) -> Sampler:
    if name == "always_on":
        return ALWAYS_ON
    if name == "always_off":
        return ALWAYS_OFF
    if name == "traceidratio":
        return TraceIdRatioBased(ratio)
    if name == "parentbased_always_on":
        return ParentBased(ALWAYS_ON)
    if name == "parentbased_always_off":
        return ParentBased(ALWAYS_OFF)
    return ParentBased(TraceIdRatioBased(ratio))


def trace_sampler(settings: TracingSettings) -> Sampler:
    """The sampler ``settings`` ask for: by default ParentBased(TraceIdRatioBased(ratio)), so a
    trace is kept or dropped whole across the services; ``OTEL_TRACES_SAMPLER`` names another.
    Unless tracing is off (``always_off``) or ``traces_keep_errors`` is false, spans not sampled are
    recorded, for their errors."""
    name: SamplerName = settings.traces_sampler or "parentbased_traceidratio"
    ratio = settings.traces_sample_ratio
    if settings.traces_sampler and settings.traces_sampler_arg is not None:
        ratio = settings.traces_sampler_arg
    chosen = _named_sampler(name, ratio)
    if name == "always_off" or not settings.traces_keep_errors:
        return chosen
    return RecordUnsampled(chosen)


REQUEST_DATA: Final = frozenset(
    {
        "url.full",
        "url.path",
        "url.query",
        "url.original",
        "http.url",
        "http.target",
        "client.address",
        "client.port",
        "net.peer.ip",
        "net.peer.port",
        "net.sock.peer.addr",
        "net.sock.peer.port",
    }
)
"""What the HTTP instrumentation records of a request that may carry a caller's data (a path holds
ids and idempotency keys, a query anything; the caller's address): a server span leaves with its
route template (``http.route``), method and status, never these."""
EXCEPTION_KEPT: Final = frozenset({"exception.type", "exception.escaped"})
"""What a recorded exception keeps when it leaves: its type, never its message or stack trace (a
message may quote its input)."""


def leaving(span: ReadableSpan) -> ReadableSpan | None:
    """``span`` as it leaves the process, or None when it stays: a sampled span, or one that ended
    in error (its trace may not be kept). Most spans leave as they are: a server span leaves without
    ``REQUEST_DATA``, a recorded exception as its type, an error's description up to its first
    colon (the exception's type where a library wrote ``Type: message``)."""
    failed = span.status.status_code is StatusCode.ERROR
    if not (span.context is not None and span.context.trace_flags.sampled) and not failed:
        return None
    if span.kind is not SpanKind.SERVER and not span.events and not failed:
        return span
    attributes = span.attributes or {}
    if span.kind is SpanKind.SERVER:
        attributes = {key: value for key, value in attributes.items() if key not in REQUEST_DATA}
    status = span.status
    if failed and status.description and ":" in status.description:
        status = Status(StatusCode.ERROR, status.description.split(":", 1)[0])
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=[_safe_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _safe_event(event: Event) -> Event:
    if event.name != "exception":
        return event
    kept = {key: value for key, value in (event.attributes or {}).items() if key in EXCEPTION_KEPT}
    return Event(event.name, kept, event.timestamp)


DROP_REASONS: Final = ("queue_full", "export_failed")


class SpanDrops:
    """Spans a service meant to export and lost, by reason: its export queue was full, or the
    exporter failed (the collector was down past the exporter's retries)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(DROP_REASONS, 0)

    def add(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counts[reason] += count

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


_DROPS: dict[str, SpanDrops] = {}


def span_drops(service: str) -> SpanDrops:
    """The drops of ``service``'s span exports in this process (``rxsm_spans_dropped_total``)."""
    return _DROPS.setdefault(service, SpanDrops())


class _Counted(SpanExporter):
    """The exporter the queue hands its batches to: counts the spans handed over, and those lost
    when the export fails."""

    def __init__(self, inner: SpanExporter, drops: SpanDrops) -> None:
        self.inner = inner
        self.drops = drops
        self.handed_total = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.handed_total += len(spans)
        try:
            result = self.inner.export(spans)
        except Exception:
            self.drops.add("export_failed", len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            self.drops.add("export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SpanExport(BatchSpanProcessor):
    """OpenTelemetry's batch span processor, sized from settings, exporting what ``leaving`` lets
    leave, and counting what it drops: a span that finds ``span_queue_size`` spans waiting is
    dropped and counted (the SDK's own queue would drop its oldest span, unseen)."""

    def __init__(self, exporter: SpanExporter, settings: TracingSettings, drops: SpanDrops) -> None:
        self._counted = _Counted(exporter, drops)
        self._drops = drops
        self._capacity = settings.span_queue_size
        self._queued = 0
        self._lock = threading.Lock()
        super().__init__(
            self._counted,
            max_queue_size=settings.span_queue_size,
            schedule_delay_millis=settings.span_export_delay_ms,
            max_export_batch_size=settings.span_export_batch_size,
        )

    def waiting(self) -> int:
        """Spans queued and not yet handed to the exporter."""
        with self._lock:
            return self._queued - self._counted.handed_total

    def on_end(self, span: ReadableSpan) -> None:
        kept = leaving(span)
        if kept is None:
            return
        with self._lock:
            if self._queued - self._counted.handed_total >= self._capacity:
                full = True
            else:
                full = False
                self._queued += 1
        if full:
            self._drops.add("queue_full")
            return
        # The SDK's own on_end would refuse a span of a trace not sampled, error or not: queue it
        # in the SDK's batch processor directly (tests/plumbing/test_tracing.py holds it to that).
        self._batch_processor.emit(kept)


class ExportEachSpan(SpanProcessor):
    """Exports each span that ``leaving`` lets leave as it ends (tests: an in-memory exporter)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        kept = leaving(span)
        if kept is not None:
            self.exporter.export((kept,))

    def shutdown(self) -> None:
        self.exporter.shutdown()


def tracer_provider(
    identity: ServiceIdentity,
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    settings: TracingSettings | None = None,
) -> TracerProvider:
    """The service's tracer provider; ``exporter`` (tests) is called synchronously on each span end.
    ``settings`` default to the environment's (``TracingSettings``)."""
    settings = settings or TracingSettings()
    provider = TracerProvider(
        sampler=trace_sampler(settings),
        resource=Resource.create(
            {"service.name": f"rxsm-{identity.name}", TOOL: str(identity.tool)}
        ),
        id_generator=SystemRandomIdGenerator(),
    )
    provider.add_span_processor(ToolAttributeProcessor(identity))
    if exporter is not None:
        provider.add_span_processor(ExportEachSpan(exporter))
    if otlp_endpoint:
        otlp = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(SpanExport(otlp, settings, span_drops(identity.name)))
    return provider


def journey_id(value: object) -> str | None:
    """``value`` as a journey's id (a UUID, in its canonical form), or None if it is not one."""
    if isinstance(value, UUID):
        return str(value)
    try:
        return str(UUID(value.decode() if isinstance(value, bytes) else str(value)))
    except ValueError:
        return None


def _ehr(value: object) -> str | None:
    try:
        return Ehr(str(value)).value
    except ValueError:
        return None


def annotate(step: str, renewal_id: object = None, ehr: object = None) -> None:
    """Name the flow step (and the renewal and EHR, when known) on the current span. A renewal id
    that is not a UUID, or an EHR that is not one of ``Ehr``, is left off."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(STEP, step)
    journey = None if renewal_id is None else journey_id(renewal_id)
    if journey is not None:
        span.set_attribute(RENEWAL_ID, journey)
    system = None if ehr is None else _ehr(ehr)
    if system is not None:
        span.set_attribute(EHR, system)


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


TOKEN_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
)


def _token(value: str) -> str:
    """``value`` if it reads as a code or a type's name (at most 64 letters, digits, ``_.-``),
    else ``unreadable``: a code an upstream answered carries no text of a message."""
    if 0 < len(value) <= 64 and TOKEN_CHARACTERS.issuperset(value):
        return value
    return "unreadable"


def record_failure(error_type: str, tool: object, code: str | None = None) -> None:
    """Mark the current span failed: ``error.type``, the tool that owns the failure, its code."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    error_type = _token(error_type)
    code = None if code is None else _token(code)
    span.set_status(StatusCode.ERROR, code or error_type)
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_attribute(FAILED_TOOL, str(tool))
    if code:
        span.set_attribute(ERROR_CODE, code)


_TRACERS: "WeakKeyDictionary[TracerProvider, trace.Tracer]" = WeakKeyDictionary()


def rxsm_tracer(tracing: TracerProvider) -> trace.Tracer:
    """The tracer of rxsm's own spans in ``tracing`` (made once per provider)."""
    tracer = _TRACERS.get(tracing)
    if tracer is None:
        tracer = _TRACERS.setdefault(tracing, tracing.get_tracer("rxsm"))
    return tracer


def record_span(tracing: TracerProvider, record: ConsumerRecord, group: str) -> trace.Span:
    """The one ``process`` span of a record in its consumer group, started as a child of the span
    that produced the record (its W3C ``traceparent`` header), so a renewal's trace runs through
    every hop, a batch's included. The caller ends it (``trace.use_span(span, end_on_exit=True)``)."""
    headers = {
        name: value.decode("utf-8", "replace")
        for name, value in record.headers or ()
        if name in TRACE_HEADERS
    }
    return rxsm_tracer(tracing).start_span(
        f"{record.topic} process",
        context=W3C.extract(headers),
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
        record_exception=False,
        set_status_on_exception=False,
    )


@contextmanager
def producer_span(
    tracing: TracerProvider, topic: str, key: bytes | None, headers: MutableMapping[str, str]
) -> Iterator[trace.Span]:
    """The one ``publish`` span of a record sent to ``topic``, current while it is sent; its W3C
    trace context goes into ``headers``, so the record's consumers' spans are its children. The key
    is recorded when it is a journey's id (rxsm's events are keyed by one)."""
    attributes: dict[str, str] = {
        SpanAttributes.MESSAGING_SYSTEM: "kafka",
        SpanAttributes.MESSAGING_OPERATION: "publish",
        DESTINATION: topic,
    }
    journey = None if key is None else journey_id(key)
    if journey is not None:
        attributes[SpanAttributes.MESSAGING_KAFKA_MESSAGE_KEY] = journey
    with rxsm_tracer(tracing).start_as_current_span(
        f"{topic} publish",
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        W3C.inject(headers)
        try:
            yield span
        except Exception as error:
            failed(span, error)
            raise


def failed(span: trace.Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error``'s type alone (its message may quote its input)."""
    name = _token(type(error).__name__)
    span.set_status(StatusCode.ERROR, name)
    span.set_attribute(ERROR_TYPE, name)
