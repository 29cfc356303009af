"""The prefilled renewal message (domain.md section 4), byte for byte as VA's builder writes it.

VA's builder is ``buildRxRenewalMessageBody(rx, rxError)`` in department-of-veterans-affairs/vets-website
``src/applications/mhv-secure-messaging/util/helpers.js`` (read at commit f02b46a6ecdc). Its template, line
by line (each line ``Label: value``, the nine joined by ``\\n``):

- ``Medication name, strength, and form: ${rx?.prescriptionName || ''}``
- ``Prescription number: ${rx?.prescriptionNumber || 'Prescription number not available'}``
- ``Instructions: ${rx?.sig || 'Instructions not available'}``
- ``Provider who prescribed it:`` first and last name ``.filter(Boolean).join(' ')``, else
  ``Provider name not available``
- ``Number of refills left:`` refillRemaining unless null, undefined, '' or NaN (so 0 is written),
  else ``Number of refills left not available``
- ``Prescription expiration date:`` ``dateFormat(expirationDate, 'MMMM D, YYYY')`` when truthy, else
  ``Date not available``
- ``Reason for use: ${rx?.reason || 'Reason for use not available'}``
- ``Last filled on:`` the same for ``sortedDispensedDate`` (only), else ``Not filled yet``
- ``Quantity: ${rx?.quantity || 'Quantity not available'}``

With ``rxError`` every value is ``''``. Nothing is trimmed or joined: values are written as they come.

The first section reproduces every case of VA's own unit tests of the builder, department-of-veterans-affairs/
vets-website ``src/applications/mhv-secure-messaging/tests/util/helpers.unit.spec.jsx`` (commit
adf7d61203e0, ``describe('buildRxRenewalMessageBody')``), with VA's inputs and VA's expected text. VA
asserts ``include``; these assert the whole line, as the template above writes it. VA's records have
no id; rxsm's Prescription needs one, so each is given ``prescriptionId``.
"""

from typing import Any

import pytest

from schemas.records import Prescription
from services.messaging.domain import prescription_loaded, renewal_body

VA_SPEC = "vets-website src/applications/mhv-secure-messaging/tests/util/helpers.unit.spec.jsx"

MOCK_RX: dict[str, Any] = {
    "prescriptionId": "1",
    "prescriptionName": "Lisinopril 10mg",
    "prescriptionNumber": "1234567890",
    "providerFirstName": "Dr.",
    "providerLastName": "Smith",
    "refillRemaining": 2,
    "expirationDate": "2024-12-31",
    "reason": "Refill needed",
    "quantity": "30 tablets",
    "sortedDispensedDate": "2023-08-04",
    "sig": "Take one tablet by mouth daily",
}
"""VA's ``mockRx`` (plus the id rxsm needs)."""

ALL_PLACEHOLDERS = (
    "Medication name, strength, and form: \n"
    "Prescription number: Prescription number not available\n"
    "Instructions: Instructions not available\n"
    "Provider who prescribed it: Provider name not available\n"
    "Number of refills left: Number of refills left not available\n"
    "Prescription expiration date: Date not available\n"
    "Reason for use: Reason for use not available\n"
    "Last filled on: Not filled yet\n"
    "Quantity: Quantity not available"
)
"""VA's spec: "should handle null / undefined / empty rx object and show all placeholders". The name
line ends with ": " (``rx?.prescriptionName || ''``)."""

LOAD_ERROR = (
    "Medication name, strength, and form: \n"
    "Prescription number: \n"
    "Instructions: \n"
    "Provider who prescribed it: \n"
    "Number of refills left: \n"
    "Prescription expiration date: \n"
    "Reason for use: \n"
    "Last filled on: \n"
    "Quantity: "
)
"""VA's builder with ``rxError``: every value is '' after the label's ": "."""


def rx(**changes: Any) -> Prescription:
    """VA's ``{...mockRx, ...changes}``, parsed as rxsm parses a prescription."""
    return Prescription.model_validate({**MOCK_RX, **changes})


def lines(body: str) -> list[str]:
    return body.split("\n")


# VA's unit tests of the builder (helpers.unit.spec.jsx).


def test_va_rx_error_gives_every_label_with_nothing_after_it() -> None:
    """VA: 'should return message body with empty values when rxError is true'."""
    body = renewal_body(rx(), rx_error=True)
    assert body == LOAD_ERROR
    for value in (
        "Lisinopril 10mg",
        "1234567890",
        "Take one tablet by mouth daily",
        "Dr. Smith",
        "2",
        "December 31, 2024",
        "Refill needed",
        "30 tablets",
        "August 4, 2023",
    ):
        assert value not in body


def test_va_valid_rx_data_fills_every_line() -> None:
    """VA: 'should format message body correctly with valid rx data when rxError is false'; the whole
    body as the template writes it."""
    assert renewal_body(rx(), rx_error=False) == (
        "Medication name, strength, and form: Lisinopril 10mg\n"
        "Prescription number: 1234567890\n"
        "Instructions: Take one tablet by mouth daily\n"
        "Provider who prescribed it: Dr. Smith\n"
        "Number of refills left: 2\n"
        "Prescription expiration date: December 31, 2024\n"
        "Reason for use: Refill needed\n"
        "Last filled on: August 4, 2023\n"
        "Quantity: 30 tablets"
    )


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        pytest.param(
            {"providerFirstName": None, "providerLastName": None},
            "Provider who prescribed it: Provider name not available",
            id="should handle missing provider names and show placeholder",
        ),
        pytest.param(
            {"providerFirstName": "Dr.", "providerLastName": None},
            "Provider who prescribed it: Dr.",
            id="should handle partial provider names",
        ),
        pytest.param(
            {"refillRemaining": 5},
            "Number of refills left: 5",
            id="should handle numeric refillRemaining",
        ),
        pytest.param(
            {"refillRemaining": "3"},
            "Number of refills left: 3",
            id="should handle string refillRemaining",
        ),
        pytest.param(
            {"refillRemaining": None},
            "Number of refills left: Number of refills left not available",
            id="should handle invalid refillRemaining and show placeholder",
        ),
        pytest.param(
            {"refillRemaining": 0},
            "Number of refills left: 0",
            id="should handle zero refillRemaining",
        ),
        pytest.param(
            {"refillRemaining": ""},
            "Number of refills left: Number of refills left not available",
            id="should handle empty string refillRemaining and show placeholder",
        ),
        pytest.param(
            {"expirationDate": "2023-06-15"},
            "Prescription expiration date: June 15, 2023",
            id="should format expiration date correctly",
        ),
        pytest.param(
            {"expirationDate": None},
            "Prescription expiration date: Date not available",
            id="should handle missing expiration date and show placeholder",
        ),
        pytest.param(
            {"expirationDate": ""},
            "Prescription expiration date: Date not available",
            id="should handle empty expiration date and show placeholder",
        ),
        pytest.param(
            {"sortedDispensedDate": None},
            "Last filled on: Not filled yet",
            id="should handle missing dispensed date and show placeholder",
        ),
        pytest.param(
            {"sortedDispensedDate": ""},
            "Last filled on: Not filled yet",
            id="should handle empty dispensed date and show placeholder",
        ),
        pytest.param(
            {"prescriptionName": None},
            "Medication name, strength, and form: ",
            id="should handle missing prescriptionName",
        ),
        pytest.param(
            {"prescriptionNumber": None},
            "Prescription number: Prescription number not available",
            id="should handle missing prescriptionNumber and show placeholder",
        ),
        pytest.param(
            {"reason": None},
            "Reason for use: Reason for use not available",
            id="should handle missing reason and show placeholder",
        ),
        pytest.param(
            {"quantity": None},
            "Quantity: Quantity not available",
            id="should handle missing quantity and show placeholder",
        ),
        pytest.param(
            {"sig": None},
            "Instructions: Instructions not available",
            id="should handle missing sig and show placeholder",
        ),
    ],
)
def test_va_one_changed_field_changes_its_line_only(changes: dict[str, Any], line: str) -> None:
    """VA's one-field cases: the line VA expects, and every other line as for ``mockRx``."""
    expected = lines(renewal_body(rx(), rx_error=False))
    (index,) = [i for i, text in enumerate(expected) if text.startswith(line.split(":")[0] + ":")]
    expected[index] = line
    assert lines(renewal_body(rx(**changes), rx_error=False)) == expected


@pytest.mark.parametrize(
    "prescription",
    [
        pytest.param(None, id="should handle null rx object and show all placeholders"),
        pytest.param(None, id="should handle undefined rx object and show all placeholders"),
        pytest.param(
            Prescription(prescriptionId="1"),
            id="should handle empty rx object and show all placeholders",
        ),
    ],
)
def test_va_no_prescription_data_without_an_error_shows_every_placeholder(
    prescription: Prescription | None,
) -> None:
    """VA's null, undefined and ``{}`` records with ``rxError`` false (Python has one None for
    JavaScript's null and undefined; rxsm's empty record still has its id)."""
    assert renewal_body(prescription, rx_error=False) == ALL_PLACEHOLDERS


def test_va_rx_error_left_out_is_no_error_for_a_loaded_prescription() -> None:
    """VA: 'should handle rxError defaulting to false'."""
    assert lines(renewal_body(rx()))[:3] == [
        "Medication name, strength, and form: Lisinopril 10mg",
        "Prescription number: 1234567890",
        "Instructions: Take one tablet by mouth daily",
    ]


# The same rules on what rxsm receives.


def test_a_prescription_carrying_nothing_but_its_id_was_not_loaded() -> None:
    """rxsm's SM has the prescription from the renewal's event; with nothing but its id it is where
    VA's SM stands when loading the prescription failed: VA's ``rxError`` body."""
    only_id = Prescription(prescriptionId="22597817")
    assert not prescription_loaded(only_id)
    assert not prescription_loaded(None)
    assert renewal_body(only_id) == LOAD_ERROR
    assert renewal_body(None) == LOAD_ERROR


def test_a_prescription_with_any_data_is_loaded_even_if_the_body_reads_none_of_it() -> None:
    """Loaded, but none of the nine values: every placeholder, as VA's ``{}`` record."""
    status_only = Prescription(prescriptionId="22597817", dispStatus="Active")
    assert prescription_loaded(status_only)
    assert renewal_body(status_only) == ALL_PLACEHOLDERS


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        pytest.param(
            {"sig": "TAKE ONE TABLET\nBY MOUTH   DAILY"},
            "Instructions: TAKE ONE TABLET\nBY MOUTH   DAILY",
            id="a multi-line sig stays as it is",
        ),
        pytest.param(
            {"providerFirstName": "Jane", "providerLastName": "  "},
            "Provider who prescribed it: Jane   ",
            id="a blank last name is a name ('  ' is truthy)",
        ),
        pytest.param(
            {"providerFirstName": "", "providerLastName": "Smith"},
            "Provider who prescribed it: Smith",
            id="an empty first name is left out",
        ),
        pytest.param(
            {"reason": "   "},
            "Reason for use:    ",
            id="a blank reason is written ('   ' is truthy)",
        ),
        pytest.param({"reason": ""}, "Reason for use: Reason for use not available", id="empty"),
        pytest.param({"quantity": 30}, "Quantity: 30", id="a numeric quantity"),
        pytest.param({"quantity": 30.0}, "Quantity: 30", id="30.0 as JavaScript writes it"),
        pytest.param({"quantity": 2.5}, "Quantity: 2.5", id="a fraction"),
        pytest.param({"quantity": 0}, "Quantity: Quantity not available", id="0 is falsy"),
        pytest.param({"quantity": "0"}, "Quantity: 0", id="'0' is truthy"),
        pytest.param(
            {"prescriptionNumber": 0},
            "Prescription number: Prescription number not available",
            id="a numeric 0 prescription number is falsy",
        ),
        pytest.param({"prescriptionNumber": 3636691}, "Prescription number: 3636691", id="number"),
        pytest.param(
            {"sortedDispensedDate": None, "dispensedDate": "2025-09-30"},
            "Last filled on: Not filled yet",
            id="dispensedDate is not read",
        ),
        pytest.param(
            {"sortedDispensedDate": "2025-10-01T04:00:00.000Z"},
            "Last filled on: October 1, 2025",
            id="a VistA time (midnight Eastern)",
        ),
    ],
)
def test_values_are_written_as_they_come(changes: dict[str, Any], line: str) -> None:
    """No trimming, no joining onto one line (VA's template writes the value itself); JavaScript's
    ``||`` takes the fallback only for a missing or empty value."""
    body = renewal_body(rx(**changes))
    assert line in body
    assert body.count(line.split(":")[0] + ":") == 1
