"""PHI never leaves a process in a log line or a span.

Log lines are masked on their way out; spans are not scanned: what sets their attributes takes only
ids, codes and names of steps, rxsm records no exception's message, and the HTTP server span leaves
without the request's URL."""

import io
import json

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ValidationError

from plumbing.identity import ServiceIdentity
from plumbing.logs import configure_logging, get_logger
from plumbing.redaction import MASK, redact_value, scrub_text
from plumbing.settings import TracingSettings
from plumbing.telemetry import annotate, record_failure, tracer_provider
from schemas.vocabulary import Tool

IDENTITY = ServiceIdentity("messaging", Tool.SM)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssn 123-45-6789 on file", "ssn [SSN] on file"),
        ("ssn 123456789 on file", "ssn [SSN] on file"),
        ("born 03/05/1950", "born [DATE]"),
        ("born 1950-03-05.", "born [DATE]."),
        (
            "renewal 9b2f6c1e-8a4d-4b8e-9f0a-1c2d3e4f5a6b",
            "renewal 9b2f6c1e-8a4d-4b8e-9f0a-1c2d3e4f5a6b",
        ),
        ("at 2026-11-23T17:50:00Z", "at 2026-11-23T17:50:00Z"),
        ("veteran 1012845331V153043", "veteran 1012845331V153043"),
        ("team 1013155", "team 1013155"),
    ],
)
def test_scrubbing_masks_ssn_and_date_like_values_only(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


@pytest.mark.parametrize("key", ["body", "subject", "providerLastName", "first_name", "SSN", "dob"])
def test_phi_keys_are_masked_whatever_they_hold(key: str) -> None:
    assert redact_value(key, "anything at all") == MASK
    assert redact_value("nested", {key: "x", "draft_id": "d-1"}) == {key: MASK, "draft_id": "d-1"}


def test_a_log_line_carries_no_phi() -> None:
    stream = io.StringIO()
    configure_logging(IDENTITY, stream=stream)
    get_logger(IDENTITY).warning(
        "draft refused for 123-45-6789", body="My name is John Smith", draft_id="d-1"
    )
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["body"] == MASK
    assert line["event"] == "draft refused for [SSN]"
    assert line["draft_id"] == "d-1"
    assert "John" not in stream.getvalue()


class Name(BaseModel):
    last_name: int


def test_a_recorded_exception_leaves_its_span_as_its_type_alone() -> None:
    exporter = InMemorySpanExporter()
    tracing = tracer_provider(IDENTITY, exporter=exporter, settings=TracingSettings())
    library = tracing.get_tracer("a library that records exceptions")
    with pytest.raises(ValidationError), library.start_as_current_span("send"):
        Name.model_validate({"last_name": "Smith" + "-Jones"})

    [finished] = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "ValidationError"
    [exception] = finished.events
    recorded = dict(exception.attributes or {})
    assert set(recorded) == {"exception.type", "exception.escaped"}
    assert recorded["exception.type"] == "pydantic_core._pydantic_core.ValidationError"
    assert "Smith-Jones" not in repr(finished.to_json())


def test_rxsm_sets_only_ids_codes_and_enumerations_on_a_span() -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_provider(IDENTITY, exporter=exporter, settings=TracingSettings())
    with tracer.get_tracer("test").start_as_current_span("step"):
        annotate("draft.create", renewal_id="Jane Doe 123-45-6789", ehr="John Smith")
        record_failure("ValidationError", Tool.SM, code="Patient John Smith not found")
    with tracer.get_tracer("test").start_as_current_span("step"):
        annotate(
            "draft.create", renewal_id="9B2F6C1E-8A4D-4B8E-9F0A-1C2D3E4F5A6B", ehr="oracle_health"
        )
        record_failure("sm_failed", Tool.SM, code="SM98")

    refused, kept = (dict(span.attributes or {}) for span in exporter.get_finished_spans())
    assert "rxsm.renewal_id" not in refused and "rxsm.ehr" not in refused
    assert refused["rxsm.error_code"] == "unreadable"
    assert "John" not in str(refused)
    assert kept["rxsm.renewal_id"] == "9b2f6c1e-8a4d-4b8e-9f0a-1c2d3e4f5a6b"
    assert (kept["rxsm.ehr"], kept["rxsm.error_code"]) == ("oracle_health", "SM98")


async def test_an_http_server_span_leaves_without_the_requests_url_or_an_errors_message() -> None:
    exporter = InMemorySpanExporter()
    tracing = tracer_provider(IDENTITY, exporter=exporter, settings=TracingSettings())
    app = FastAPI()

    @app.get("/v1/renewals/by-idempotency-key/{key}")
    async def by_key(key: str, veteran: str) -> dict[str, str]:
        if key == "fail":
            raise RuntimeError(f"no renewal for {veteran}")
        return {}

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracing, exclude_spans=["receive", "send"]
    )
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://rxsm") as client:
        found = await client.get(
            "/v1/renewals/by-idempotency-key/Jane-Doe?veteran=1012845331V153043"
        )
        failed = await client.get("/v1/renewals/by-idempotency-key/fail?veteran=John%20Smith")
    assert (found.status_code, failed.status_code) == (200, 500)

    spans = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert [span.name for span in spans] == ["GET /v1/renewals/by-idempotency-key/{key}"] * 2
    for span in spans:
        assert dict(span.attributes or {})["http.route"] == "/v1/renewals/by-idempotency-key/{key}"
        for text in ("Jane", "1012845331V153043", "John", "fail"):
            assert text not in str(span.to_json()), (span.name, text)
    assert spans[1].status.status_code is StatusCode.ERROR
    assert [dict(event.attributes or {}) for event in spans[1].events] == [
        {"exception.type": "RuntimeError", "exception.escaped": "False"}
    ]
    assert trace.get_current_span() is trace.INVALID_SPAN
