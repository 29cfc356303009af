"""Secure Messaging rules for drafts and the prefilled renewal message: pure, no I/O.

Domain facts: domain.md sections 4 (the prefilled message) and 5 (SM error codes).
"""

from dataclasses import dataclass
from datetime import date

from schemas.records import Prescription

RENEWAL_SUBJECT = "Renewal Needed"
SUBJECT_MAX_LENGTH = 50
NOT_FILLED_YET = "Not filled yet"


def long_date(value: date) -> str:
    """``March 5, 2026``: how SM writes dates in the renewal message."""
    return f"{value:%B} {value.day}, {value.year}"


def _provider(prescription: Prescription) -> str:
    names = (prescription.providerFirstName, prescription.providerLastName)
    return " ".join(name.strip() for name in names if name and name.strip())


def renewal_body(prescription: Prescription | None) -> str:
    """The nine-line prefilled renewal message; labels only when the prescription is unknown."""
    labels = (
        "Medication name, strength, and form",
        "Prescription number",
        "Instructions",
        "Provider who prescribed it",
        "Number of refills left",
        "Prescription expiration date",
        "Reason for use",
        "Last filled on",
        "Quantity",
    )
    if prescription is None:
        return "\n".join(f"{label}:" for label in labels)
    rx = prescription
    values = (
        rx.prescriptionName,
        rx.prescriptionNumber,
        rx.sig,
        _provider(rx),
        None if rx.refillRemaining is None else str(rx.refillRemaining),
        long_date(rx.expirationDate) if rx.expirationDate else None,
        rx.reason,
        long_date(rx.sortedDispensedDate) if rx.sortedDispensedDate else NOT_FILLED_YET,
        rx.quantity,
    )
    return "\n".join(
        f"{label}: {value.strip()}" if value and value.strip() else f"{label}:"
        for label, value in zip(labels, values, strict=True)
    )


@dataclass(frozen=True)
class SmError(Exception):
    """An SM error: its code (domain.md section 5), the HTTP status, and what to do about it."""

    code: str
    status: int
    message: str


def recipient_missing() -> SmError:
    return SmError("SM119", 422, "Choose a care team before sending.")


def check_subject(subject: str) -> None:
    if not subject.strip():
        raise SmError("SM_SUBJECT_REQUIRED", 422, "Enter a subject.")
    if len(subject) > SUBJECT_MAX_LENGTH:
        raise SmError(
            "SM_SUBJECT_TOO_LONG", 422, f"Shorten the subject to {SUBJECT_MAX_LENGTH} characters."
        )


def check_body(body: str) -> None:
    if not body.strip():
        raise SmError("SM_BODY_REQUIRED", 422, "Enter a message.")
