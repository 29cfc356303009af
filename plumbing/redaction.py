"""Masking PHI in log lines before they leave a process.

Two rules: values under keys that name PHI (names, message text, instructions) are replaced outright, and
any other text is scrubbed of SSN-like and date-of-birth-like values. Trace ids, UUIDs and timestamps pass.

Spans are not scanned: their attributes are kept free of PHI where they are set (plumbing/telemetry.py).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

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
