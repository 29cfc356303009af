"""PHI never leaves a process in a log line or a span attribute."""

import io
import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, ValidationError

from plumbing.identity import ServiceIdentity
from plumbing.logs import configure_logging, get_logger
from plumbing.redaction import MASK, redact_value, scrub_text
from plumbing.telemetry import tracer_provider
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


def test_a_recorded_exception_does_not_echo_the_input_into_the_span() -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_provider(IDENTITY, exporter=exporter).get_tracer("test")
    payload = {"last_name": "Smith" + "-Jones"}
    with tracer.start_as_current_span("send") as span:
        span.set_attribute("rxsm.body", "Please renew, John Smith")
        try:
            Name.model_validate(payload)
        except ValidationError as error:
            span.record_exception(error)
    [finished] = exporter.get_finished_spans()
    assert finished.attributes is not None and finished.attributes["rxsm.body"] == MASK
    assert finished.attributes["rxsm.tool"] == "sm"
    exception = finished.events[0].attributes or {}
    assert "Smith-Jones" not in str(exception["exception.message"])
    assert "Smith-Jones" not in str(exception["exception.stacktrace"])
