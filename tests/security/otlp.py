"""An OTLP/HTTP endpoint in the test process that keeps what the services export: every span's
attributes, its events' and links' attributes, and its resource's."""

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return " ".join(_text(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return " ".join(f"{kv.key}={_text(kv.value)}" for kv in value.kvlist_value.values)
    return "" if kind is None else str(getattr(value, kind))


def _pairs(attributes: Any) -> Iterator[tuple[str, str]]:
    attribute: KeyValue
    for attribute in attributes:
        yield attribute.key, _text(attribute.value)


class SpanSink:
    """``with SpanSink() as sink``: point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at ``sink.endpoint``."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with lock:
                    sink.requests.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "SpanSink":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def services(self) -> set[str]:
        """The ``service.name`` of every resource that exported spans."""
        return {
            value
            for request in self.requests
            for resource_spans in request.resource_spans
            for key, value in _pairs(resource_spans.resource.attributes)
            if key == "service.name"
        }

    def span_count(self) -> int:
        return sum(
            len(scope.spans)
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope in resource_spans.scope_spans
        )

    def attributes(self) -> Iterator[tuple[str, str]]:
        """(key, value as text) of every attribute exported, and each span's name as ``span.name``."""
        for request in self.requests:
            for resource_spans in request.resource_spans:
                yield from _pairs(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        yield "span.name", span.name
                        yield "span.status", span.status.message
                        yield from _pairs(span.attributes)
                        for event in span.events:
                            yield "event.name", event.name
                            yield from _pairs(event.attributes)
                        for link in span.links:
                            yield from _pairs(link.attributes)
