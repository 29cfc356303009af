"""Renewal eligibility, rule by rule, for VistA and Oracle Health prescriptions (domain.md section 2)."""

from datetime import date, timedelta
from typing import Any

import pytest

from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr
from services.renewal.domain import Refusal, check_renewal, oh_refills_remaining

TODAY = date(2026, 6, 1)


def days(n: int) -> str:
    """TODAY plus ``n`` days (negative: in the past), as the Medications app sends it."""
    return (TODAY + timedelta(days=n)).isoformat()


VISTA_RENEWABLE: dict[str, Any] = {
    "prescriptionId": "22045678",
    "dispStatus": "Active",
    "refillRemaining": 0,
    "expirationDate": days(90),
    "isRefillable": False,
    "isRenewable": True,
    "prescriptionSource": "VA",
    "stationNumber": "442",
    "sortedDispensedDate": days(-30),
}

OH_RENEWABLE: dict[str, Any] = {
    "prescriptionId": "15214213790",
    "dispStatus": "Active",
    "prescriptionSource": "VA",
    "stationNumber": "668",
    "expirationDate": days(30),
    "medicationRequestStatus": "active",
    "medicationCategory": "va_prescription",
    "dispenseCount": 2,
    "completedDispenseCount": 2,
    "numberOfRepeatsAllowed": 1,
    "refillRequested": False,
    "dispenseInProgress": False,
}


def request(base: dict[str, Any], changes: dict[str, Any], ehr: Ehr) -> RenewalRequest:
    prescription = {**base, **changes}
    return RenewalRequest.model_validate(
        {
            "veteranId": "1012845331V153043",
            "prescription": {k: v for k, v in prescription.items() if v is not None},
            "facilities": [{"stationNumber": base["stationNumber"], "ehr": ehr.value}],
        }
    )


VISTA_RULES: list[tuple[str, dict[str, Any], Refusal | None]] = [
    ("active, no refills left, not expired", {}, None),
    ("active, no expiration date on record", {"expirationDate": None}, None),
    ("expired 30 days ago", {"dispStatus": "Expired", "expirationDate": days(-30)}, None),
    (
        "expired 30 days ago with refills left",
        {"dispStatus": "Expired", "expirationDate": days(-30), "refillRemaining": 3},
        None,
    ),
    ("expired exactly 120 days ago", {"dispStatus": "Expired", "expirationDate": days(-120)}, None),
    (
        "expired 121 days ago",
        {"dispStatus": "Expired", "expirationDate": days(-121)},
        Refusal.EXPIRED_OVER_120_DAYS,
    ),
    (
        "active but past its date, refills left",
        {"expirationDate": days(-10), "refillRemaining": 2},
        None,
    ),
    (
        "active but 121 days past its date",
        {"expirationDate": days(-121)},
        Refusal.EXPIRED_OVER_120_DAYS,
    ),
    ("expires today: not expired yet", {"expirationDate": days(0)}, None),
    (
        "refills left and refillable",
        {"refillRemaining": 2, "isRefillable": True},
        Refusal.REFILLABLE,
    ),
    (
        "refills left, refillable flag absent",
        {"refillRemaining": 2, "isRefillable": None},
        Refusal.REFILLABLE,
    ),
    (
        "marked expired with a future date",
        {"dispStatus": "Expired", "expirationDate": days(10)},
        Refusal.EXPIRATION_DATE_MISMATCH,
    ),
    (
        "marked expired without a date",
        {"dispStatus": "Expired", "expirationDate": None},
        Refusal.NO_EXPIRATION_DATE,
    ),
    ("discontinued", {"dispStatus": "Discontinued"}, Refusal.DISCONTINUED),
    ("transferred", {"dispStatus": "Transferred"}, Refusal.TRANSFERRED),
    ("non-VA status", {"dispStatus": "Active: Non-VA"}, Refusal.NON_VA),
    ("non-VA source", {"prescriptionSource": "NV"}, Refusal.NON_VA),
    ("on hold", {"dispStatus": "Active: On Hold"}, Refusal.ON_HOLD),
    ("unknown", {"dispStatus": "Unknown"}, Refusal.UNKNOWN_STATUS),
    ("a status outside the vocabulary", {"dispStatus": "Pending"}, Refusal.UNKNOWN_STATUS),
    ("refill in process", {"dispStatus": "Active: Refill in Process"}, Refusal.REFILL_IN_PROCESS),
    ("refill submitted", {"dispStatus": "Active: Submitted"}, Refusal.REFILL_IN_PROCESS),
    ("parked with fill history", {"dispStatus": "Active: Parked"}, None),
    (
        "parked, filled per dispensedDate",
        {"dispStatus": "Active: Parked", "sortedDispensedDate": None, "dispensedDate": days(-40)},
        None,
    ),
    (
        "parked, never filled",
        {"dispStatus": "Active: Parked", "sortedDispensedDate": None},
        Refusal.PARKED_NOT_FILLED,
    ),
    ("status missing", {"dispStatus": None}, Refusal.MISSING_STATUS),
    (
        "refills left missing, not expired",
        {"refillRemaining": None},
        Refusal.MISSING_REFILLS_REMAINING,
    ),
    (
        "refills left missing, expired within the window",
        {"refillRemaining": None, "dispStatus": "Expired", "expirationDate": days(-5)},
        None,
    ),
    ("upstream flag absent: the rule decides", {"isRenewable": None}, None),
    ("upstream says no, the rule says yes", {"isRenewable": False}, Refusal.NOT_RENEWABLE),
]


@pytest.mark.parametrize(
    ("changes", "refusal"), [row[1:] for row in VISTA_RULES], ids=[row[0] for row in VISTA_RULES]
)
def test_vista(changes: dict[str, Any], refusal: Refusal | None) -> None:
    verdict = check_renewal(request(VISTA_RENEWABLE, changes, Ehr.VISTA), TODAY)
    assert verdict.ehr is Ehr.VISTA
    assert verdict.refusal is refusal


@pytest.mark.parametrize(
    ("changes", "refusal", "disagrees"),
    [
        ({}, None, False),
        ({"isRenewable": None}, None, False),
        ({"isRenewable": False}, Refusal.NOT_RENEWABLE, True),
        ({"isRenewable": True, "dispStatus": "Discontinued"}, Refusal.DISCONTINUED, True),
        ({"isRenewable": True, "refillRemaining": 3}, Refusal.REFILLABLE, True),
        ({"isRenewable": False, "refillRemaining": 3}, Refusal.REFILLABLE, False),
    ],
    ids=[
        "agree",
        "no flag",
        "flag says no",
        "flag yes, discontinued",
        "flag yes, refillable",
        "both no",
    ],
)
def test_vista_upstream_flag_is_cross_checked_and_a_disagreement_is_reported(
    changes: dict[str, Any], refusal: Refusal | None, disagrees: bool
) -> None:
    verdict = check_renewal(request(VISTA_RENEWABLE, changes, Ehr.VISTA), TODAY)
    assert (verdict.refusal, verdict.upstream_disagrees) == (refusal, disagrees)


OH_RULES: list[tuple[str, dict[str, Any], Refusal | None]] = [
    ("all gates pass", {}, None),
    ("clinic-administered", {"medicationCategory": "clinic_administered"}, None),
    (
        "expired 60 days ago, refills left",
        {"expirationDate": days(-60), "numberOfRepeatsAllowed": 5},
        None,
    ),
    ("ended exactly 120 days ago", {"expirationDate": days(-120)}, None),
    ("ended 121 days ago", {"expirationDate": days(-121)}, Refusal.EXPIRED_OVER_120_DAYS),
    ("future end, refills left", {"numberOfRepeatsAllowed": 3}, Refusal.REFILLABLE),
    (
        "the first fill is not a refill",
        {"numberOfRepeatsAllowed": 1, "completedDispenseCount": 1},
        Refusal.REFILLABLE,
    ),
    (
        "more fills than repeats: floored at 0",
        {"numberOfRepeatsAllowed": 1, "completedDispenseCount": 5},
        None,
    ),
    (
        "FHIR counts absent: refillRemaining 0",
        {"numberOfRepeatsAllowed": None, "completedDispenseCount": None, "refillRemaining": 0},
        None,
    ),
    (
        "FHIR counts absent: refillRemaining 2",
        {"numberOfRepeatsAllowed": None, "completedDispenseCount": None, "refillRemaining": 2},
        Refusal.REFILLABLE,
    ),
    ("no refill count at all", {"numberOfRepeatsAllowed": None}, Refusal.MISSING_REFILLS_REMAINING),
    (
        "no refill count, but expired",
        {"numberOfRepeatsAllowed": None, "expirationDate": days(-1)},
        None,
    ),
    (
        "completed, even if recently expired",
        {"medicationRequestStatus": "completed", "expirationDate": days(-10)},
        Refusal.COMPLETED,
    ),
    ("on hold", {"medicationRequestStatus": "on-hold"}, Refusal.ON_HOLD),
    ("stopped", {"medicationRequestStatus": "stopped"}, Refusal.DISCONTINUED),
    ("cancelled", {"medicationRequestStatus": "cancelled"}, Refusal.DISCONTINUED),
    ("entered in error", {"medicationRequestStatus": "entered-in-error"}, Refusal.DISCONTINUED),
    ("draft", {"medicationRequestStatus": "draft"}, Refusal.UNKNOWN_STATUS),
    ("unknown", {"medicationRequestStatus": "unknown"}, Refusal.UNKNOWN_STATUS),
    ("status missing", {"medicationRequestStatus": None}, Refusal.MISSING_STATUS),
    ("documented non-VA", {"medicationCategory": "documented_non_va"}, Refusal.NON_VA),
    ("non-VA source", {"prescriptionSource": "NV"}, Refusal.NON_VA),
    ("inpatient", {"medicationCategory": "inpatient"}, Refusal.NOT_VA_PRESCRIPTION),
    ("pharmacy charges", {"medicationCategory": "pharmacy_charges"}, Refusal.NOT_VA_PRESCRIPTION),
    ("uncategorized", {"medicationCategory": "uncategorized"}, Refusal.NOT_VA_PRESCRIPTION),
    ("category missing", {"medicationCategory": None}, Refusal.MISSING_CATEGORY),
    ("never dispensed", {"dispenseCount": 0, "completedDispenseCount": 0}, Refusal.NEVER_DISPENSED),
    ("dispense count missing", {"dispenseCount": None}, Refusal.MISSING_DISPENSE_COUNT),
    ("no validity-period end", {"expirationDate": None}, Refusal.NO_EXPIRATION_DATE),
    ("refill requested online", {"refillRequested": True}, Refusal.REFILL_IN_PROCESS),
    ("dispense in progress", {"dispenseInProgress": True}, Refusal.REFILL_IN_PROCESS),
    ("discontinued in the Medications app", {"dispStatus": "Discontinued"}, Refusal.DISCONTINUED),
    ("transferred in the Medications app", {"dispStatus": "Transferred"}, Refusal.TRANSFERRED),
    ("upstream flag is not consulted", {"isRenewable": False}, None),
]


@pytest.mark.parametrize(
    ("changes", "refusal"), [row[1:] for row in OH_RULES], ids=[row[0] for row in OH_RULES]
)
def test_oracle_health(changes: dict[str, Any], refusal: Refusal | None) -> None:
    verdict = check_renewal(request(OH_RENEWABLE, changes, Ehr.ORACLE_HEALTH), TODAY)
    assert verdict.ehr is Ehr.ORACLE_HEALTH
    assert verdict.refusal is refusal
    assert not verdict.upstream_disagrees


@pytest.mark.parametrize(
    ("repeats", "completed", "remaining"),
    [(0, 0, 0), (0, 1, 0), (3, 0, 3), (3, 1, 3), (3, 2, 2), (3, 4, 0), (3, 9, 0)],
)
def test_oracle_health_refills_remaining(repeats: int, completed: int, remaining: int) -> None:
    rx = request(
        OH_RENEWABLE,
        {"numberOfRepeatsAllowed": repeats, "completedDispenseCount": completed},
        Ehr.ORACLE_HEALTH,
    ).prescription
    assert oh_refills_remaining(rx) == remaining


def test_the_veterans_facilities_decide_which_rules_apply() -> None:
    """An OH-only gate (no FHIR status) refuses at an OH station; the same record at a VistA one is
    judged by the VistA rule."""
    changes = {"medicationRequestStatus": None}
    at_oh = check_renewal(request(OH_RENEWABLE, changes, Ehr.ORACLE_HEALTH), TODAY)
    at_vista = check_renewal(
        request({**OH_RENEWABLE, "refillRemaining": 0}, changes, Ehr.VISTA), TODAY
    )
    assert (at_oh.ehr, at_oh.refusal) == (Ehr.ORACLE_HEALTH, Refusal.MISSING_STATUS)
    assert (at_vista.ehr, at_vista.refusal) == (Ehr.VISTA, None)


@pytest.mark.parametrize("refusal", list(Refusal))
def test_every_refusal_tells_a_person_what_to_do(refusal: Refusal) -> None:
    assert refusal.message.endswith(".")
    assert len(refusal.message.split()) >= 8
