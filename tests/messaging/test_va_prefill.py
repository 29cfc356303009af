"""Contract: VA's own prescription records, prefilled as VA's builder writes them.

Every record of VA's fixtures in ``tests/fixtures/va/prescriptions`` (``SOURCES`` names each file's VA
repository, path and commit) takes the path a prescription takes through rxsm: the Medications app's
renewal request as the renewal service parses it, then the ``careteams.resolved`` event as the messaging
service reads it from Kafka, then the body the service prefills (``renewal_body`` of the event's
prescription, as ``services/messaging/handlers.py`` calls it).

Each record's expected body below is written from the record's values by VA's builder,
department-of-veterans-affairs/vets-website ``src/applications/mhv-secure-messaging/util/helpers.js``
(``buildRxRenewalMessageBody``, commit f02b46a6ecdc):

- name, number, instructions (``sig``), reason, quantity: ``value || fallback`` (the name's fallback is
  ''); VA's fixtures have no ``reason``, so every record says "Reason for use not available";
- provider: ``[providerFirstName, providerLastName].filter(Boolean).join(' ')`` or "Provider name not
  available";
- refills left: the number unless null, undefined or '' (0 is written "0");
- expiration date: ``dateFormat(expirationDate, 'MMMM D, YYYY')`` when truthy, else "Date not
  available"; last filled on: the same with ``sortedDispensedDate`` only (never ``dispensedDate``),
  else "Not filled yet".

Dates: VA's ``dateFormat`` renders in the browser's zone (``moment.tz.guess()``); the expected days are
those of a browser in US Eastern time, the UTC day of every time in these fixtures (midnight Eastern,
04:00 or 05:00 UTC, or noon UTC), and a date-only value as written. MHV's RFC 2822 times in the raw
VistA file ("Wed, 15 Jul 2026 00:00:00 EDT") are what vets-api turns into ISO times (2026-07-15T04:00Z,
``lib/unified_health_data/adapters/vista_prescription_adapter.rb``) before a browser sees them.
"""

from typing import Any
from uuid import uuid4

import pytest

from schemas.events import CareTeamsResolved
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr, PickerKind
from services.messaging.domain import renewal_body
from tests.va_fixtures import PRESCRIPTIONS, every_prescription_record

VETERAN = "1012845331V153043"

NO_REASON = "Reason for use not available"
NOT_FILLED = "Not filled yet"

EXPECTED: dict[tuple[str, str], tuple[str, ...]] = {
    # vets-api spec/fixtures/unified_health_data/prescriptions_response.json, its VistA records.
    ("vets-api/prescriptions_response.vista.json", "28148665"): (
        "COAL TAR 2.5% TOP SOLN",
        "3636485",
        "APPLY TEASPOONFUL(S) TO THE AFFECTED AREA EVERY DAY",
        "BHAVIN PATEL",
        "11",
        "July 15, 2026",
        NO_REASON,
        NOT_FILLED,
        "1",
    ),
    ("vets-api/prescriptions_response.vista.json", "28148545"): (
        "BACITRACIN 500 UNT/GM OPH OINT",
        "3636483",
        "APPLY, A SEGMENT(S) INSIDE, LOWER LID OF EYE EVERY DAY",
        "BHAVIN PATEL",
        "11",
        "August 13, 2026",
        NO_REASON,
        NOT_FILLED,
        "5",
    ),
    # dispensedDate "Mon, 03 May 2004 ..." but no sortedDispensedDate: not filled yet, by VA's rule.
    ("vets-api/prescriptions_response.vista.json", "5098027"): (
        "HEPATITIS B VACCINE 20MCG/ML 1ML",
        "2530896",
        "INJECT ENGERIX 20 MICROGRAMS INTRAMUSCULAR ONCE GIVEN IN CLINIC",
        "AMY GLASER",
        "0",
        "May 5, 2004",
        NO_REASON,
        NOT_FILLED,
        "3",
    ),
    # sortedDispensedDate "2024-03-18" (a date) while dispensedDate is 2024-03-19T05:00Z: the former.
    ("vets-website/active-parked-zero-refills-with-dispense-date.json", "23298058"): (
        "ALUMINUM HYDROXIDE GEL 320MG/5ML SUSP",
        "2720848",
        "USE 1 TO MOUTH DAILY FOR 30 DAYS TEST",
        "MOHAMMAD ISLAM",
        "0",
        "February 19, 2025",
        NO_REASON,
        "March 18, 2024",
        "500",
    ),
    # '' for sig, both provider names, refillRemaining, both dates and quantity: every fallback.
    ("vets-website/empty-field-prescription-details.json", "23915785"): (
        "DANAZOL 100MG CAP",
        "2721069",
        "Instructions not available",
        "Provider name not available",
        "Number of refills left not available",
        "Date not available",
        NO_REASON,
        NOT_FILLED,
        "Quantity not available",
    ),
    # The details answer's grouped medication: '' provider names, refills and quantity.
    ("vets-website/empty-field-prescription-details.json", "24936580"): (
        "DANAZOL 100MG CAP",
        "2721069",
        "TAKE ONE CAPSULE BY MOUTH DAILY FOR 30 DAYS",
        "Provider name not available",
        "Number of refills left not available",
        "June 15, 2025",
        NO_REASON,
        NOT_FILLED,
        "Quantity not available",
    ),
    ("vets-website/expired-prescription-details.json", "21296515"): (
        "ACTRETIN 50MG CAP",
        "2720245B",
        "TAKE 5G DAILY FOR 30 DAYS TEST TEST INDICATION TEST",
        "MOHAMMAD ISLAM",
        "11",
        "September 21, 2023",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    # expirationDate 2027-04-14T12:00:00.000Z: April 14 in every US zone.
    ("vets-website/oracle-health-prescriptions.json", "22377956"): (
        "MELOXICAM 15MG TAB",
        "2720554",
        "TAKE ONE TABLET BY MOUTH DAILY FOR 30 DAYS",
        "MOHAMMAD ISLAM",
        "0",
        "April 14, 2027",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsList.json", "22377956"): (
        "MELOXICAM 15MG TAB",
        "2720554",
        "TAKE ONE TABLET BY MOUTH DAILY FOR 30 DAYS",
        "MOHAMMAD ISLAM",
        "5",
        "July 12, 2024",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsList.json", "22332759"): (
        "ONDANSETRON 8 MG TAB",
        "2720542",
        "TAKE ONE TABLET BY MOUTH DAILY FOR 30 DAYS",
        "MOHAMMAD ISLAM",
        "4",
        "July 14, 2024",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsList.json", "22225375"): (
        "DRESSING,XEROFORM 5IN X 9IN SMC#433605",
        "3636868A",
        "APPLY 3OZ TO THE AFFECTED AREA WEEKLY FOR 30 DAYS",
        "MOHAMMAD ISLAM",
        "0",
        "July 23, 2023",
        NO_REASON,
        NOT_FILLED,
        "1",
    ),
    ("vets-website/prescriptionsList.json", "22217099"): (
        "FEEDING BAG,1000ML KENDAL #8884773600",
        "3636937",
        "1 MISCORAL WEEKLY FOR 30 DAYS",
        "MOHAMMAD ISLAM",
        "0",
        "June 25, 2023",
        NO_REASON,
        NOT_FILLED,
        "1",
    ),
    ("vets-website/prescriptionsListOH.json", "22377957"): (
        "LISINOPRIL 10MG TAB",
        "OH12345",
        "TAKE ONE TABLET BY MOUTH DAILY FOR 30 DAYS",
        "SARAH JOHNSON",
        "3",
        "July 19, 2024",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    # dispensedDate 2023-07-16T04:00Z, no sortedDispensedDate: not filled yet.
    ("vets-website/prescriptionsListOH.json", "22377958"): (
        "METFORMIN HCL 500MG TAB",
        "OH12346",
        "TAKE ONE TABLET BY MOUTH TWICE DAILY WITH MEALS",
        "MICHAEL CHEN",
        "0",
        "July 14, 2024",
        NO_REASON,
        NOT_FILLED,
        "60",
    ),
    ("vets-website/prescriptionsListOH.json", "22377960"): (
        "OMEPRAZOLE 20MG CAP",
        "OH12348",
        "TAKE ONE CAPSULE BY MOUTH DAILY BEFORE BREAKFAST",
        "SARAH JOHNSON",
        "2",
        "July 5, 2024",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsListOH.json", "22377962"): (
        "GABAPENTIN 300MG CAP",
        "OH12350",
        "TAKE ONE CAPSULE BY MOUTH THREE TIMES DAILY",
        "MICHAEL CHEN",
        "0",
        "July 14, 2023",
        NO_REASON,
        NOT_FILLED,
        "90",
    ),
    ("vets-website/prescriptionsListOH.json", "22377963"): (
        "SERTRALINE HCL 50MG TAB",
        "OH12351",
        "TAKE ONE TABLET BY MOUTH DAILY IN THE MORNING",
        "DAVID MARTINEZ",
        "0",
        "August 24, 2023",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsListOH.json", "22377966"): (
        "HYDROCHLOROTHIAZIDE 25MG TAB",
        "OH12354",
        "TAKE ONE TABLET BY MOUTH DAILY",
        "SARAH JOHNSON",
        "4",
        "May 31, 2024",
        NO_REASON,
        NOT_FILLED,
        "30",
    ),
    ("vets-website/prescriptionsListOH.json", "22377969"): (
        "VITAMIN D3 1000 UNIT TAB",
        "OH12357",
        "TAKE ONE TABLET BY MOUTH DAILY",
        "DAVID MARTINEZ",
        "5",
        "July 9, 2024",
        NO_REASON,
        NOT_FILLED,
        "90",
    ),
}
"""Each record's nine values after its label, by (fixture file, prescriptionId)."""

LABELS = (
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
"""VA's labels, in the builder's order."""


RECORDS = every_prescription_record()


def prefilled(record: dict[str, Any]) -> str:
    """The body rxsm prefills for ``record``: the renewal request parsed as the renewal service parses
    it, its prescription carried by ``careteams.resolved`` through its JSON (Kafka) form, and
    ``renewal_body`` of what the messaging service reads."""
    request = RenewalRequest.model_validate({"veteranId": VETERAN, "prescription": record})
    event = CareTeamsResolved(
        renewal_id=uuid4(),
        veteran_id=request.veteranId,
        ehr=Ehr.VISTA,
        prescription=request.prescription,
        care_systems=[],
        suggested_team_id=None,
        picker=PickerKind.AUTO,
    )
    received = CareTeamsResolved.model_validate_json(event.model_dump_json())
    return renewal_body(received.prescription)


def test_every_va_record_has_its_expected_body() -> None:
    """No fixture record goes unchecked, and no expectation names a record that is not there."""
    assert RECORDS, f"no VA prescription fixtures under {PRESCRIPTIONS}"
    assert sorted(RECORDS) == sorted(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: f"{key[0]}#{key[1]}")
def test_a_va_record_is_prefilled_as_vas_builder_writes_it(key: tuple[str, str]) -> None:
    lines = prefilled(RECORDS[key]).split("\n")
    assert lines == [
        f"{label}: {value}" for label, value in zip(LABELS, EXPECTED[key], strict=True)
    ]
