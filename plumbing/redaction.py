"""Masking PHI before anything leaves a process: log lines and span attributes.

Two rules: values under keys that name PHI (names, message text, instructions) are replaced outright, and
any other text is scrubbed of SSN-like and date-of-birth-like values. Trace ids, UUIDs and timestamps pass.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from structlog.typing import EventDict

MASK = "[REDACTED]"

PHI_KEYS = frozenset(
    key.lower()
    for key in (
        "body",
        "subject",
        "message_body",
        "sig",
        "reason_for_use",
        "prescriptionName",
        "providerFirstName",
        "providerLastName",
        "provider_name",
        "first_name",
        "last_name",
        "full_name",
        "veteran_name",
        "name_of_veteran",
        "ssn",
        "social_security_number",
        "dob",
        "date_of_birth",
        "birth_date",
        "email",
        "phone",
        "address",
    )
)
"""Keys whose values are PHI whatever they hold (compared case-insensitively)."""

PASS_KEYS = frozenset({"timestamp", "occurred_at", "trace_id", "span_id"})

SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])|(?<![\w-])\d{9}(?![\w-])")
US_DATE = re.compile(r"(?<!\d)(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/(19|20)\d{2}(?!\d)")
ISO_DATE = re.compile(r"(?<![\d-])(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?![\dT:])")


PYDANTIC_INPUT = re.compile(r"input_value=.*?(?=, input_type=)", re.DOTALL)


def scrub_text(text: str) -> str:
    """``text`` with SSN-like and date-like values, and echoed validation inputs, masked."""
    text = PYDANTIC_INPUT.sub("input_value=" + MASK, text)
    text = SSN.sub("[SSN]", text)
    text = US_DATE.sub("[DATE]", text)
    return ISO_DATE.sub("[DATE]", text)


def redact_value(key: str, value: Any) -> Any:
    if key.lower() in PHI_KEYS:
        return MASK
    if key in PASS_KEYS:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return type(value)(redact_value(key, item) for item in value)  # type: ignore[call-arg]
    return value


def redact_log(_: Any, __: str, event: EventDict) -> EventDict:
    """structlog processor: mask PHI in every key of the line."""
    return {key: redact_value(key, value) for key, value in event.items()}


def redact_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: redact_value(key.rsplit(".", 1)[-1], value)
        for key, value in (attributes or {}).items()
    }


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; every span's attributes and event attributes are masked on the way out."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redacted_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    events = [
        Event(event.name, redact_attributes(event.attributes), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redact_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
