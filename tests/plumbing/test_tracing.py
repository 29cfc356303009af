"""Tracing as a service runs it: a trace kept or dropped whole across services, every error span
kept, one span per record per hop, and an export queue that counts what it drops.

OpenTelemetry's ratio sampler keeps a trace when the low 64 bits of its trace id are below
``ratio * 2**64`` (the SDK's TraceIdRatioBased, after OpenTelemetry's specification); the expected
decisions below are computed from that rule, not read back from the services.
"""

import threading
from collections.abc import Iterator, Sequence
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter, TestKafkaBroker
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from plumbing.broker import make_broker, subscribe
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from plumbing.settings import ServiceSettings, TracingSettings
from plumbing.telemetry import (
    SpanExport,
    annotate,
    producer_span,
    record_failure,
    record_span,
    span_drops,
    tracer_provider,
)
from schemas.vocabulary import Tool

UPSTREAM = ServiceIdentity("renewal", Tool.MEDS)
DOWNSTREAM = ServiceIdentity("careteam", Tool.SM)
TOPIC = "rxsm.meds.renewal-requested.v1"
ENV = (
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "RXSM_TRACES_SAMPLE_RATIO",
    "RXSM_TRACES_KEEP_ERRORS",
)


@pytest.fixture(autouse=True)
def no_tracing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def service(
    identity: ServiceIdentity, **settings: object
) -> tuple[TracerProvider, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    tracing = TracingSettings.model_validate(settings)
    return tracer_provider(identity, exporter=exported, settings=tracing), exported


def record_of(headers: dict[str, str], offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=None,
        value=b"{}",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=2,
        headers=[(name, value.encode()) for name, value in headers.items()],
    )


def hop(
    upstream: TracerProvider, downstream: TracerProvider, fail: bool = False
) -> tuple[int, str]:
    """A request in one service publishes a record the other consumes; the trace id and the
    traceparent the record carried."""
    headers: dict[str, str] = {}
    request = upstream.get_tracer("test").start_as_current_span("POST /v1/renewals")
    with request as span, producer_span(upstream, TOPIC, None, headers):
        trace_id = span.get_span_context().trace_id
    consumed = record_span(downstream, record_of(headers), "rxsm-careteam")
    with trace.use_span(consumed, end_on_exit=True):
        if fail:
            record_failure("care_team_unavailable", Tool.SM, code="no_associations")
    return trace_id, headers["traceparent"]


def trace_ids(exported: InMemorySpanExporter) -> set[int]:
    return {span.context.trace_id for span in exported.get_finished_spans()}


def kept_by_ratio(trace_id: int, ratio: float) -> bool:
    return trace_id & (2**64 - 1) < round(ratio * 2**64)


def test_a_trace_is_kept_or_dropped_whole_across_services_by_its_id() -> None:
    upstream, up_spans = service(UPSTREAM, traces_sample_ratio=0.5)
    downstream, down_spans = service(DOWNSTREAM, traces_sample_ratio=0.5)

    hops = [hop(upstream, downstream) for _ in range(64)]

    expected = {trace_id for trace_id, _ in hops if kept_by_ratio(trace_id, 0.5)}
    assert 0 < len(expected) < len(hops), "both decisions occur in 64 traces"
    assert trace_ids(up_spans) == expected
    assert trace_ids(down_spans) == expected, "the consumer follows the producer's decision"
    for trace_id, traceparent in hops:
        flags = traceparent.rsplit("-", 1)[1]
        assert flags == ("01" if trace_id in expected else "00"), "the decision travels"
    assert len(up_spans.get_finished_spans()) == 2 * len(expected)
    assert len(down_spans.get_finished_spans()) == len(expected)


def test_a_span_that_fails_is_exported_though_its_trace_is_not_kept() -> None:
    upstream, up_spans = service(UPSTREAM, traces_sample_ratio=0.0)
    downstream, down_spans = service(DOWNSTREAM, traces_sample_ratio=0.0)

    hop(upstream, downstream)
    trace_id, _ = hop(upstream, downstream, fail=True)

    assert up_spans.get_finished_spans() == ()
    [failed] = down_spans.get_finished_spans()
    assert failed.context.trace_id == trace_id
    assert not failed.context.trace_flags.sampled
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["rxsm.failed_tool"] == "sm"
    assert failed.attributes["rxsm.error_code"] == "no_associations"
    assert failed.attributes["rxsm.tool"] == "sm"
    assert failed.parent is not None and failed.parent.is_remote


def test_without_keep_errors_a_trace_not_kept_records_nothing() -> None:
    upstream, _ = service(UPSTREAM, traces_sample_ratio=0.0, traces_keep_errors=False)
    downstream, down_spans = service(DOWNSTREAM, traces_sample_ratio=0.0, traces_keep_errors=False)

    hop(upstream, downstream, fail=True)

    assert down_spans.get_finished_spans() == ()


def test_otel_traces_sampler_always_off_turns_tracing_off_errors_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    downstream, exported = service(DOWNSTREAM)
    span = record_span(downstream, record_of({}), "rxsm-careteam")

    assert not span.is_recording()
    assert exported.get_finished_spans() == ()


def test_otel_traces_sampler_and_its_argument_replace_the_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    monkeypatch.setenv("RXSM_TRACES_SAMPLE_RATIO", "1")
    upstream, up_spans = service(UPSTREAM)
    downstream, _ = service(DOWNSTREAM)

    hop(upstream, downstream)

    assert up_spans.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("RXSM_TRACES_SAMPLE_RATIO", "1.5"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "99999"),
    ],
)
def test_tracing_settings_refuse_what_they_cannot_honour(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        TracingSettings()


class Blocking(SpanExporter):
    """An exporter stuck in its first export until released (a collector that hangs)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.release.wait(10)
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def identity() -> Iterator[ServiceIdentity]:
    """A service of its own, so its drops are its test's alone."""
    yield ServiceIdentity(f"tracing-{uuid4().hex[:8]}", Tool.SM)


def queue_of(
    identity: ServiceIdentity, exporter: SpanExporter, size: int, ratio: float = 1.0
) -> tuple[TracerProvider, SpanExport]:
    settings = TracingSettings(
        traces_sample_ratio=ratio,
        span_queue_size=size,
        span_export_batch_size=1,
        span_export_delay_ms=10,
    )
    tracing = tracer_provider(identity, settings=settings)
    export = SpanExport(exporter, settings, span_drops(identity.name))
    tracing.add_span_processor(export)
    return tracing, export


def test_a_full_span_queue_drops_and_counts_each_span_on_metrics(
    identity: ServiceIdentity,
) -> None:
    exporter = Blocking()
    tracing, export = queue_of(identity, exporter, size=4)
    tracer = tracing.get_tracer("test")
    tracer.start_span("first").end()
    assert exporter.entered.wait(10), "the exporter holds the first span"

    try:
        for index in range(10):
            tracer.start_span(f"span {index}").end()

        assert export.waiting() == 4
        assert span_drops(identity.name).counts() == {"queue_full": 6, "export_failed": 0}
    finally:
        exporter.release.set()
    tracing.force_flush()
    assert [span.name for span in exporter.exported] == [
        "first",
        *(f"span {index}" for index in range(4)),
    ]
    text = ServiceMetrics(identity).prometheus_text().decode()
    assert 'rxsm_spans_dropped_total{reason="queue_full"} 6.0' in text
    assert 'rxsm_spans_dropped_total{reason="export_failed"} 0.0' in text
    tracing.shutdown()


class Refusing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_spans_an_exporter_fails_to_send_are_counted_dropped(identity: ServiceIdentity) -> None:
    tracing, _ = queue_of(identity, Refusing(), size=16)
    for index in range(3):
        tracing.get_tracer("test").start_span(f"span {index}").end()

    tracing.force_flush()

    assert span_drops(identity.name).counts() == {"queue_full": 0, "export_failed": 3}
    tracing.shutdown()


def test_a_queue_not_full_drops_nothing(identity: ServiceIdentity) -> None:
    exported = InMemorySpanExporter()
    tracing, _ = queue_of(identity, exported, size=16)
    for index in range(40):
        tracing.get_tracer("test").start_span(f"span {index}").end()
        tracing.force_flush()

    assert len(exported.get_finished_spans()) == 40
    assert span_drops(identity.name).counts() == {"queue_full": 0, "export_failed": 0}
    tracing.shutdown()


def test_the_export_queue_sends_error_spans_of_traces_not_kept(identity: ServiceIdentity) -> None:
    exported = InMemorySpanExporter()
    tracing, _ = queue_of(identity, exported, size=16, ratio=0.0)
    tracer = tracing.get_tracer("test")
    tracer.start_span("fine").end()
    with tracer.start_as_current_span("failing"):
        record_failure("sm_failed", Tool.SM, code="SM98")

    tracing.force_flush()

    [failed] = exported.get_finished_spans()
    assert (failed.name, failed.context.trace_flags.sampled) == ("failing", False)
    tracing.shutdown()


async def test_each_record_is_one_publish_span_and_one_process_span_per_consumer() -> None:
    """Through the broker's middlewares: a record published and consumed one by one, and a batch."""
    identity = ServiceIdentity("careteam", Tool.SM)
    exported = InMemorySpanExporter()
    tracing = tracer_provider(identity, exporter=exported, settings=TracingSettings())
    broker = make_broker(identity, ServiceSettings(), tracing)
    router = KafkaRouter()
    handled: list[object] = []

    async def handler(body: dict[str, int]) -> None:
        annotate("test.one")
        handled.append(body)

    subscribe(router, TOPIC, handler, identity)
    broker.include_router(router)
    renewal_id = uuid4()

    async with TestKafkaBroker(broker) as connected:
        await connected.publish({"n": 1}, topic=TOPIC, key=str(renewal_id).encode())

    assert handled == [{"n": 1}]
    spans = exported.get_finished_spans()
    assert sorted((span.name, span.kind) for span in spans) == [
        (f"{TOPIC} process", SpanKind.CONSUMER),
        (f"{TOPIC} publish", SpanKind.PRODUCER),
    ]
    [process] = [span for span in spans if span.kind is SpanKind.CONSUMER]
    [publish] = [span for span in spans if span.kind is SpanKind.PRODUCER]
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == publish.context.trace_id
    assert dict(publish.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation": "publish",
        "messaging.destination.name": TOPIC,
        "messaging.kafka.message.key": str(renewal_id),
        "rxsm.tool": "sm",
    }
    found = dict(process.attributes or {})
    assert found["messaging.consumer.group.name"] == "rxsm-careteam"
    assert found["rxsm.step"] == "test.one"


def test_a_record_key_that_is_not_a_journey_id_is_not_recorded() -> None:
    tracing, exported = service(UPSTREAM)
    headers: dict[str, str] = {}

    with producer_span(tracing, TOPIC, b"veteran 1012845331V153043", headers):
        pass

    [span] = exported.get_finished_spans()
    assert "messaging.kafka.message.key" not in (span.attributes or {})
    assert set(headers) == {"traceparent"}


def test_only_the_w3c_trace_context_goes_into_kafka_headers() -> None:
    tracing, _ = service(UPSTREAM)
    headers: dict[str, str] = {}
    token = context.attach(baggage.set_baggage("veteran", "Jane Doe"))
    try:
        with producer_span(tracing, TOPIC, None, headers):
            pass
    finally:
        context.detach(token)

    assert set(headers) == {"traceparent"}
