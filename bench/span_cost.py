"""What a span costs in CPU, by how rxsm's tracing is set: ``python -m bench.span_cost``.

Each iteration is one record's hop as the services trace it: a ``publish`` span (the W3C context
written into the record's headers), the consumer's ``process`` span read from those headers and
annotated with the step, renewal and EHR, and the ``publish`` span of the event it emits: three spans.
The figures are the process's CPU time (the export thread's included, the queue flushed at the end)
per span, and the memory a span holds while it waits in the export queue. Nothing here is a test:
the machine's load moves the figures, compare them within one run.
"""

import argparse
import gc
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from plumbing.identity import ServiceIdentity
from plumbing.redaction import redact_value
from plumbing.settings import TracingSettings
from plumbing.telemetry import (
    SpanExport,
    annotate,
    producer_span,
    record_span,
    span_drops,
    tracer_provider,
)
from schemas.vocabulary import Ehr, Tool

IDENTITY = ServiceIdentity("span-cost", Tool.SM)
SPANS_PER_HOP = 3


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class RegexScan(SpanExporter):
    """The per-attribute regex pass rxsm ran on every exported span before (for comparison)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_scanned(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()


def _scanned(span: ReadableSpan) -> ReadableSpan:
    def scan(attributes: Any) -> dict[str, Any]:
        return {
            key: redact_value(key.rsplit(".", 1)[-1], value)
            for key, value in (attributes or {}).items()
        }

    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scan(span.attributes),
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class NoTracing(TracerProvider):
    """OpenTelemetry's no-op tracers: what the hop costs without any span."""

    def get_tracer(self, *_: Any, **__: Any) -> Any:
        return trace.NoOpTracer()


def hop(tracing: TracerProvider, index: int) -> None:
    renewal_id = uuid.uuid4()
    key = str(renewal_id).encode()
    headers: dict[str, str] = {"rxsm-event-type": "renewal.requested"}
    with producer_span(tracing, "rxsm.meds.renewal-requested.v1", key, headers):
        pass
    record = ConsumerRecord(
        topic="rxsm.meds.renewal-requested.v1",
        partition=index % 3,
        offset=index,
        timestamp=1_700_000_000_000 + index,
        timestamp_type=0,
        key=key,
        value=b"{}",
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=2,
        headers=[(name, value.encode()) for name, value in headers.items()],
    )
    span = record_span(tracing, record, "rxsm-careteam")
    with trace.use_span(span, end_on_exit=True):
        annotate("careteam.resolve", renewal_id=renewal_id, ehr=Ehr.VISTA)
        with producer_span(tracing, "rxsm.sm.care-teams.v1", key, {}):
            pass


@dataclass(frozen=True)
class Case:
    name: str
    provider: Callable[[str], TracerProvider]


def settings(**values: Any) -> TracingSettings:
    return TracingSettings.model_validate(values)


def queued(
    exporter: Callable[[], SpanExporter], tracing_settings: TracingSettings
) -> Callable[[str], Any]:
    """A provider whose spans go through rxsm's export queue to a new ``exporter()``."""

    def build(_: str) -> TracerProvider:
        provider = tracer_provider(IDENTITY, settings=tracing_settings)
        provider.add_span_processor(
            SpanExport(exporter(), tracing_settings, span_drops(IDENTITY.name))
        )
        return provider

    return build


def cases(sink: str) -> list[Case]:
    def otlp() -> SpanExporter:
        return OTLPSpanExporter(endpoint=sink + "/v1/traces")

    return [
        Case("no tracing SDK: the hop's own work", lambda _: NoTracing()),
        Case(
            "tracing off (always_off: no span recorded)",
            lambda _: tracer_provider(IDENTITY, settings=settings(traces_sampler="always_off")),
        ),
        Case(
            "not sampled, recorded for errors (ratio 0)",
            queued(Discard, settings(traces_sample_ratio=0.0)),
        ),
        Case(
            "not sampled, not recorded (ratio 0, keep_errors off)",
            lambda _: tracer_provider(
                IDENTITY, settings=settings(traces_sample_ratio=0.0, traces_keep_errors=False)
            ),
        ),
        Case("sampled, queued, exporter discards", queued(Discard, settings())),
        Case("sampled, exported over OTLP/HTTP", queued(otlp, settings())),
        Case(
            "ratio 0.1 over OTLP/HTTP, the rest recorded",
            queued(otlp, settings(traces_sample_ratio=0.1)),
        ),
        Case(
            "before: sampled, regex pass, OTLP/HTTP",
            queued(lambda: RegexScan(otlp()), settings()),
        ),
    ]


def measure(case: Case, hops: int) -> float:
    """CPU microseconds per span."""
    provider = case.provider("")
    for index in range(200):
        hop(provider, index)
    provider.force_flush()
    gc.collect()
    started = time.process_time()
    for index in range(hops):
        hop(provider, index)
    provider.force_flush()
    spent = time.process_time() - started
    provider.shutdown()
    return spent / (hops * SPANS_PER_HOP) * 1e6


def bytes_per_queued_span(count: int = 2000) -> float:
    """What a finished span holds while it waits in the export queue (tracemalloc)."""
    held: list[ReadableSpan] = []
    provider = tracer_provider(IDENTITY, settings=settings())
    provider.add_span_processor(_Keep(held))
    hop(provider, 0)
    held.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count // SPANS_PER_HOP):
        hop(provider, index)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(held)


class _Keep(SpanProcessor):
    def __init__(self, held: list[ReadableSpan]) -> None:
        self.held = held

    def on_end(self, span: ReadableSpan) -> None:
        self.held.append(span)


SINK = (
    "import sys, time\n"
    "from bench.otlp_sink import OtlpSink\n"
    "with OtlpSink() as sink:\n"
    "    print(sink.endpoint, flush=True)\n"
    "    sys.stdin.read()\n"
)


@contextmanager
def sink() -> Iterator[str]:
    """A local OTLP/HTTP endpoint in a process of its own (its CPU is not the exporter's); it
    stops when its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hops", type=int, default=5000, help="records' hops per case")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each case's best is shown")
    args = parser.parse_args(argv)
    with sink() as endpoint:
        chosen = cases(endpoint)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for case in chosen:
                figure = measure(case, args.hops)
                best[case.name] = min(best.get(case.name, figure), figure)
    print(
        f"CPU per span, best of {args.rounds} rounds of {args.hops} hops ({SPANS_PER_HOP} spans):"
    )
    width = max(map(len, best))
    for name, figure in best.items():
        print(f"  {name:<{width}}  {figure:6.1f} us  ({figure * SPANS_PER_HOP:6.1f} us per hop)")
    print(f"memory per span waiting for export: {bytes_per_queued_span() / 1024:.1f} KiB")
    print(f"spans dropped: {sum(span_drops(IDENTITY.name).counts().values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
