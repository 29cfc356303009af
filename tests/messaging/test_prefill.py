"""The prefilled renewal message (domain.md section 4): nine lines, each with its fallback."""

from typing import Any

import pytest

from schemas.records import Prescription
from services.messaging.domain import renewal_body

FULL: dict[str, Any] = {
    "prescriptionId": "22597817",
    "prescriptionName": "LISINOPRIL 10MG TAB",
    "prescriptionNumber": "3636691",
    "sig": "TAKE ONE TABLET BY MOUTH DAILY",
    "providerFirstName": "Jane",
    "providerLastName": "Smith",
    "refillRemaining": 0,
    "expirationDate": "2026-03-05T05:00:00.000Z",
    "reason": "Blood pressure",
    "sortedDispensedDate": "2025-10-01",
    "quantity": 30,
}

FULL_BODY = (
    "Medication name, strength, and form: LISINOPRIL 10MG TAB\n"
    "Prescription number: 3636691\n"
    "Instructions: TAKE ONE TABLET BY MOUTH DAILY\n"
    "Provider who prescribed it: Jane Smith\n"
    "Number of refills left: 0\n"
    "Prescription expiration date: March 5, 2026\n"
    "Reason for use: Blood pressure\n"
    "Last filled on: October 1, 2025\n"
    "Quantity: 30"
)

LABELS_ONLY = (
    "Medication name, strength, and form:\n"
    "Prescription number:\n"
    "Instructions:\n"
    "Provider who prescribed it:\n"
    "Number of refills left:\n"
    "Prescription expiration date:\n"
    "Reason for use:\n"
    "Last filled on:\n"
    "Quantity:"
)


def body_without(*fields: str, **changes: Any) -> str:
    data = {key: value for key, value in FULL.items() if key not in fields}
    return renewal_body(Prescription.model_validate({**data, **changes}))


def test_a_full_prescription_fills_all_nine_lines() -> None:
    assert renewal_body(Prescription.model_validate(FULL)) == FULL_BODY


@pytest.mark.parametrize(
    ("missing", "line"),
    [
        (("prescriptionName",), "Medication name, strength, and form:"),
        (("prescriptionNumber",), "Prescription number:"),
        (("sig",), "Instructions:"),
        (("providerFirstName", "providerLastName"), "Provider who prescribed it:"),
        (("refillRemaining",), "Number of refills left:"),
        (("expirationDate",), "Prescription expiration date:"),
        (("reason",), "Reason for use:"),
        (("sortedDispensedDate",), "Last filled on: Not filled yet"),
        (("quantity",), "Quantity:"),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, tuple) else None,
)
def test_a_missing_field_leaves_its_label_or_its_fallback(
    missing: tuple[str, ...], line: str
) -> None:
    full_lines = FULL_BODY.splitlines()
    body_lines = body_without(*missing).splitlines()
    changed = [i for i, (a, b) in enumerate(zip(full_lines, body_lines, strict=True)) if a != b]
    assert len(changed) == 1, "only the missing field's line differs"
    assert body_lines[changed[0]] == line


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"providerFirstName": None}, "Provider who prescribed it: Smith"),
        ({"providerLastName": "  "}, "Provider who prescribed it: Jane"),
        (
            {"sortedDispensedDate": None, "dispensedDate": "2025-09-30"},
            "Last filled on: September 30, 2025",
        ),
        (
            {"sig": "TAKE ONE TABLET\nBY MOUTH   DAILY"},
            "Instructions: TAKE ONE TABLET BY MOUTH DAILY",
        ),
        ({"reason": "   "}, "Reason for use:"),
        ({"refillRemaining": 2}, "Number of refills left: 2"),
    ],
    ids=[
        "first name missing",
        "last name blank",
        "dispensed date",
        "multi-line sig",
        "blank",
        "refills",
    ],
)
def test_values_are_written_on_their_one_line(changes: dict[str, Any], line: str) -> None:
    body = body_without(**changes)
    assert line in body.splitlines()
    assert len(body.splitlines()) == 9


@pytest.mark.parametrize(
    "prescription",
    [None, Prescription(prescriptionId="22597817")],
    ids=["not loaded", "nothing but its id"],
)
def test_a_prescription_that_could_not_be_loaded_gives_labels_only(
    prescription: Prescription | None,
) -> None:
    assert renewal_body(prescription) == LABELS_ONLY
