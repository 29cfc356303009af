"""Renewal eligibility, rule by rule, as VA's code decides it (domain.md section 2).

Every expected value is read off VA's code, named in the row or the test:

- VistA: vets-api ``modules/my_health/app/helpers/my_health/prescription_helper.rb``,
  ``Filtering#renewable`` (commit c7427ef69ee761c09db42a5eba96d29872928220), called VISTA_RULE below.
- Oracle Health: vets-website ``src/applications/mhv-medications/components/shared/
  SendRxRenewalMessage.jsx`` (commit e087b637635083949d7c79503b856d1a78531167): the link shows when
  ``isOracleHealth && isRenewable``, called OH_LINK below. The FHIR-level cross-check follows
  vets-api ``lib/unified_health_data/adapters/oracle_health_renewability_helper.rb`` (commit
  13227f1653e01c8041cf7732edf50274de025bb6) and its spec (commit
  66134411bd98e7c7a14bac7ce3b9c66bd4216e52), reproduced case by case.
"""

from datetime import date, timedelta
from typing import Any

import pytest

from schemas.records import Prescription, RenewalRequest
from schemas.vocabulary import Ehr
from services.renewal.domain import (
    RENEWABLE_BY_GATES,
    Refusal,
    check_renewal,
    has_fhir_fields,
    oh_refills_remaining,
    oracle_health_gates,
)

TODAY = date(2026, 6, 1)
"""2026-06-01 minus 120 days is 2026-02-01."""

VISTA_RULE = "vets-api prescription_helper.rb#renewable"
OH_LINK = "vets-website SendRxRenewalMessage.jsx: isOracleHealth && isRenewable"


def days(n: int) -> str:
    """TODAY plus ``n`` days (negative: in the past), as vets-api writes a date."""
    return f"{(TODAY + timedelta(days=n)).isoformat()}T04:00:00.000Z"


VISTA_BASE: dict[str, Any] = {
    "prescriptionId": 22045678,
    "dispStatus": "Active",
    "refillRemaining": 0,
    "expirationDate": days(90),
    "isRefillable": False,
    "prescriptionSource": "RX",
    "stationNumber": "442",
    "rxRfRecords": [],
}

OH_BASE: dict[str, Any] = {
    "prescriptionId": "15214213790",
    "dispStatus": "Active",
    "refillRemaining": 0,
    "isRefillable": False,
    "isRenewable": True,
    "prescriptionSource": "VA",
    "stationNumber": "668",
    "expirationDate": days(30),
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


def refill(expiration: str | None) -> dict[str, Any]:
    """A refill record as vets-api lists it (rxRfRecords entry), with its expirationDate."""
    return {"refillStatus": "suspended", "id": 22332828, "expirationDate": expiration}


VISTA_RULES: list[tuple[str, dict[str, Any], Refusal | None, str]] = [
    ("active, 0 refills, not refillable", {}, None, f"{VISTA_RULE}: 'active' branch"),
    (
        "refillRemaining missing counts as 0",
        {"refillRemaining": None},
        None,
        f"{VISTA_RULE}: refill_remaining.to_i (nil.to_i == 0)",
    ),
    (
        "refillRemaining '' counts as 0",
        {"refillRemaining": ""},
        None,
        f"{VISTA_RULE}: '' is a missing value, nil.to_i == 0",
    ),
    (
        "refills left, not refillable",
        {"refillRemaining": 2},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: refill_remaining.to_i.zero? fails, not Expired",
    ),
    (
        "refills left, refillable",
        {"refillRemaining": 2, "isRefillable": True},
        Refusal.REFILLABLE,
        f"{VISTA_RULE}: refill_remaining.to_i.zero? fails",
    ),
    (
        "0 refills, refillable",
        {"isRefillable": True},
        Refusal.REFILLABLE,
        f"{VISTA_RULE}: not_refillable needs is_refillable.to_s == 'false'",
    ),
    (
        "isRefillable missing is not false",
        {"isRefillable": None},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: ['false'].include?(nil.to_s) is false",
    ),
    (
        "isRefillable '' is not false",
        {"isRefillable": ""},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: a missing value is not literally false",
    ),
    (
        "ACTIVE in capitals",
        {"dispStatus": "ACTIVE"},
        None,
        f"{VISTA_RULE}: disp_status&.downcase == 'active'",
    ),
    (
        "active, expired 200 days ago, 0 refills",
        {"expirationDate": days(-200)},
        None,
        f"{VISTA_RULE}: the 'active' branch does not look at the date",
    ),
    (
        "parked with a refill record",
        {"dispStatus": "Active: Parked", "rxRfRecords": [refill(None)]},
        None,
        f"{VISTA_RULE}: 'active: parked' && rx_rf_records.present? && !all?(&:empty?)",
    ),
    (
        "parked in lower case, with a refill record",
        {"dispStatus": "active: parked", "rxRfRecords": [refill(None)]},
        None,
        f"{VISTA_RULE}: disp_status&.downcase",
    ),
    (
        "parked, no refill records",
        {"dispStatus": "Active: Parked"},
        Refusal.PARKED_NOT_FILLED,
        f"{VISTA_RULE}: rx_rf_records.present? fails on []",
    ),
    (
        "parked, rxRfRecords missing",
        {"dispStatus": "Active: Parked", "rxRfRecords": None},
        Refusal.PARKED_NOT_FILLED,
        f"{VISTA_RULE}: nil.present? is false",
    ),
    (
        "parked, only empty refill records",
        {"dispStatus": "Active: Parked", "rxRfRecords": [{}, {}]},
        Refusal.PARKED_NOT_FILLED,
        f"{VISTA_RULE}: rx_rf_records.all?(&:empty?)",
    ),
    (
        "parked with a refill record, refills left",
        {"dispStatus": "Active: Parked", "rxRfRecords": [refill(None)], "refillRemaining": 1},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: refill_remaining.to_i.zero? fails",
    ),
    (
        "expired 30 days ago",
        {"dispStatus": "Expired", "expirationDate": days(-30)},
        None,
        f"{VISTA_RULE}: 'Expired' branch, within_cut_off_date?",
    ),
    (
        "expired 30 days ago, refills left",
        {"dispStatus": "Expired", "expirationDate": days(-30), "refillRemaining": 3},
        None,
        f"{VISTA_RULE}: the 'Expired' branch does not look at refills",
    ),
    (
        "expired exactly 120 days ago",
        {"dispStatus": "Expired", "expirationDate": days(-120)},
        None,
        f"{VISTA_RULE}: date >= Time.zone.today - 120.days",
    ),
    (
        "expired 121 days ago",
        {"dispStatus": "Expired", "expirationDate": days(-121)},
        Refusal.EXPIRED_OVER_120_DAYS,
        f"{VISTA_RULE}: date >= Time.zone.today - 120.days fails",
    ),
    (
        "expired, dated in the future",
        {"dispStatus": "Expired", "expirationDate": days(10)},
        None,
        f"{VISTA_RULE}: only the lower bound is checked",
    ),
    (
        "expired, 120 days in UTC though the day before in its own zone",
        {"dispStatus": "Expired", "expirationDate": "2026-01-31T23:00:00-05:00"},
        None,
        f"{VISTA_RULE}: expiration_date is a UTC time (2026-02-01T04:00Z), Rails zone UTC",
    ),
    (
        "expired, no date",
        {"dispStatus": "Expired", "expirationDate": None},
        Refusal.NO_EXPIRATION_DATE,
        f"{VISTA_RULE}: expired_date.present? fails",
    ),
    (
        "expired, date ''",
        {"dispStatus": "Expired", "expirationDate": ""},
        Refusal.NO_EXPIRATION_DATE,
        f"{VISTA_RULE}: ''.to_date is nil",
    ),
    (
        "expired, isRefillable missing",
        {"dispStatus": "Expired", "expirationDate": days(-30), "isRefillable": None},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: the 'Expired' branch needs not_refillable too",
    ),
    (
        "expired, refillable",
        {"dispStatus": "Expired", "expirationDate": days(-30), "isRefillable": True},
        Refusal.REFILLABLE,
        f"{VISTA_RULE}: the 'Expired' branch needs not_refillable too",
    ),
    (
        "expired in lower case",
        {"dispStatus": "expired", "expirationDate": days(-30)},
        Refusal.NOT_RENEWABLE,
        f"{VISTA_RULE}: disp_status == 'Expired' is case-sensitive",
    ),
    (
        "the first refill record's date wins",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-200),
            "rxRfRecords": [refill(days(-30))],
        },
        None,
        f"{VISTA_RULE}: rx_rf_records.dig(0, :expiration_date) || expiration_date",
    ),
    (
        "the first refill record's date loses",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-30),
            "rxRfRecords": [refill(days(-200))],
        },
        Refusal.EXPIRED_OVER_120_DAYS,
        f"{VISTA_RULE}: rx_rf_records.dig(0, :expiration_date) || expiration_date",
    ),
    (
        "first refill record without a date: the prescription's",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-30),
            "rxRfRecords": [refill(None), refill(days(-200))],
        },
        None,
        f"{VISTA_RULE}: nil || expiration_date",
    ),
    (
        "only the first refill record counts",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-200),
            "rxRfRecords": [{}, refill(days(-30))],
        },
        Refusal.EXPIRED_OVER_120_DAYS,
        f"{VISTA_RULE}: dig(0, ...) reads entry 0 only",
    ),
    (
        "a refill record's date is read as written",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-30),
            "rxRfRecords": [refill("Sat, 31 Jan 2026 23:00:00 EST")],
        },
        Refusal.EXPIRED_OVER_120_DAYS,
        f"{VISTA_RULE}: String#to_date keeps 2026-01-31, one day past the window",
    ),
    (
        "raw MHV refill records are unwrapped",
        {
            "dispStatus": "Expired",
            "expirationDate": days(-200),
            "rxRfRecords": [["rf_record", [refill(days(-30))]]],
        },
        None,
        "vets-api PrescriptionDetails#rx_rf_records= (records&.dig(0, 1))",
    ),
    ("discontinued", {"dispStatus": "Discontinued"}, Refusal.DISCONTINUED, VISTA_RULE),
    ("transferred", {"dispStatus": "Transferred"}, Refusal.TRANSFERRED, VISTA_RULE),
    ("on hold", {"dispStatus": "Active: On Hold"}, Refusal.ON_HOLD, VISTA_RULE),
    ("unknown", {"dispStatus": "Unknown"}, Refusal.UNKNOWN_STATUS, VISTA_RULE),
    ("non-VA status", {"dispStatus": "Active: Non-VA"}, Refusal.NON_VA, VISTA_RULE),
    (
        "refill in process",
        {"dispStatus": "Active: Refill in Process"},
        Refusal.REFILL_IN_PROCESS,
        f"{VISTA_RULE}: downcase is not 'active'",
    ),
    (
        "refill submitted",
        {"dispStatus": "Active: Submitted"},
        Refusal.REFILL_IN_PROCESS,
        f"{VISTA_RULE}: downcase is not 'active'",
    ),
    (
        "status missing",
        {"dispStatus": None},
        Refusal.UNKNOWN_STATUS,
        f"{VISTA_RULE}: nil&.downcase",
    ),
    ("status ''", {"dispStatus": ""}, Refusal.UNKNOWN_STATUS, f"{VISTA_RULE}: '' is missing"),
    ("a status outside the rule", {"dispStatus": "Pending"}, Refusal.NOT_RENEWABLE, VISTA_RULE),
    (
        "non-VA source",
        {"prescriptionSource": "NV"},
        Refusal.NON_VA,
        "vets-api prescription_helper.rb#filter_non_va_meds drops the record: never offered",
    ),
]


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [row[1:3] for row in VISTA_RULES],
    ids=[row[0] for row in VISTA_RULES],
)
def test_vista_follows_vas_rule(changes: dict[str, Any], refusal: Refusal | None) -> None:
    verdict = check_renewal(request(VISTA_BASE, changes, Ehr.VISTA), TODAY)
    assert verdict.ehr is Ehr.VISTA
    assert verdict.refusal is refusal
    assert not verdict.upstream_disagrees, "no isRenewable, nothing to disagree with"


@pytest.mark.parametrize(
    ("changes", "refusal", "disagrees"),
    [
        ({"isRenewable": True}, None, False),
        ({"isRenewable": False}, None, True),
        (
            {"isRenewable": True, "refillRemaining": 11, "isRefillable": True},
            Refusal.REFILLABLE,
            True,
        ),
        ({"isRenewable": True, "dispStatus": "Active: Submitted"}, Refusal.REFILL_IN_PROCESS, True),
        ({"isRenewable": False, "dispStatus": "Discontinued"}, Refusal.DISCONTINUED, False),
    ],
    ids=[
        "both renewable",
        "upstream no, VA's rule yes: renewable",
        "upstream yes, refills left (vets-api unified_health_data fixture 28148665)",
        "upstream yes, refill submitted (vets-api unified_health_data fixture 28148545)",
        "both no",
    ],
)
def test_vista_isrenewable_is_compared_never_followed(
    changes: dict[str, Any], refusal: Refusal | None, disagrees: bool
) -> None:
    """VA's rule decides (prescription_helper.rb#renewable); the isRenewable that vets-api's newer
    VistA adapter passes through (vista_prescription_adapter.rb) is only compared with it."""
    verdict = check_renewal(request(VISTA_BASE, changes, Ehr.VISTA), TODAY)
    assert (verdict.refusal, verdict.upstream_disagrees) == (refusal, disagrees)


OH_RULES: list[tuple[str, dict[str, Any], Refusal | None, str]] = [
    ("marked renewable", {}, None, OH_LINK),
    (
        "marked renewable, refills left and refillable",
        {"refillRemaining": 3, "isRefillable": True},
        None,
        f"{OH_LINK}: nothing else is checked",
    ),
    (
        "marked renewable, refill in process",
        {"dispStatus": "Active: Refill in Process"},
        None,
        f"{OH_LINK}: nothing else is checked",
    ),
    (
        "marked renewable, expired 300 days ago",
        {"dispStatus": "Expired", "expirationDate": days(-300)},
        None,
        f"{OH_LINK}: vets-api decided the window already",
    ),
    ("marked not renewable", {"isRenewable": False}, Refusal.NOT_RENEWABLE, OH_LINK),
    (
        "not renewable, discontinued",
        {"isRenewable": False, "dispStatus": "Discontinued"},
        Refusal.DISCONTINUED,
        f"{OH_LINK}; the status explains it",
    ),
    (
        "not renewable, on hold as the OH adapter writes it",
        {"isRenewable": False, "dispStatus": "Active: On hold"},
        Refusal.ON_HOLD,
        f"{OH_LINK}; the status explains it",
    ),
    (
        "not renewable, refillable",
        {"isRenewable": False, "refillRemaining": 2, "isRefillable": True},
        Refusal.REFILLABLE,
        f"{OH_LINK}; refillable explains it",
    ),
    (
        "isRenewable missing",
        {"isRenewable": None},
        Refusal.RENEWABILITY_UNKNOWN,
        f"{OH_LINK}: undefined is falsy, no link",
    ),
    (
        "isRenewable ''",
        {"isRenewable": ""},
        Refusal.RENEWABILITY_UNKNOWN,
        f"{OH_LINK}: '' is falsy, no link",
    ),
    (
        "non-VA source marked renewable",
        {"prescriptionSource": "NV"},
        Refusal.NON_VA,
        "vets-website ExtraDetails.jsx: isRenewable && !rxSourceIsNonVA(rx)",
    ),
]


@pytest.mark.parametrize(
    ("changes", "refusal"), [row[1:3] for row in OH_RULES], ids=[row[0] for row in OH_RULES]
)
def test_oracle_health_follows_isrenewable(
    changes: dict[str, Any], refusal: Refusal | None
) -> None:
    verdict = check_renewal(request(OH_BASE, changes, Ehr.ORACLE_HEALTH), TODAY)
    assert verdict.ehr is Ehr.ORACLE_HEALTH
    assert verdict.refusal is refusal
    assert not verdict.upstream_disagrees, "no FHIR-level fields, no cross-check"


def fhir(
    *,
    status: str = "active",
    refills: int = 3,
    expiration: int | str | None = 365,
    source: str = "VA",
    dispenses: tuple[str | None, ...] = ("completed",),
    refill_requested: bool = False,
) -> dict[str, Any]:
    """rxsm's FHIR-level fields for what VA's spec builds with ``fhir_resource(**options)``
    (vets-api spec/support FhirResourceBuilder): the same defaults (active, 3 refills, expiring in a
    year, VA, one completed dispense). ``expiration`` is days from TODAY, or a time; ``dispenses``
    the statuses of the contained MedicationDispenses; ``source`` 'VA' is community + discharge,
    order, not reported (a VA prescription), 'NV' documented non-VA, or a category."""
    category = {"VA": "va_prescription", "NV": "documented_non_va"}.get(source, source)
    expires = days(expiration) if isinstance(expiration, int) else expiration
    return {
        "medicationRequestStatus": status,
        "medicationCategory": category,
        "dispenseCount": len(dispenses),
        "completedDispenseCount": dispenses.count("completed"),
        "numberOfRepeatsAllowed": refills,
        "expirationDate": expires,
        "refillRequested": refill_requested,
        "dispenseInProgress": any(d in ("in-progress", "preparation") for d in dispenses),
    }


BOUNDARY_DAY = date(2026, 1, 15)
"""VA's boundary cases travel to 2026-01-15T12:00:00Z."""

TWO = ("completed", "completed")

VA_SPEC = "vets-api oracle_health_renewability_helper_spec.rb"
OH_GATE_CASES: list[tuple[str, dict[str, Any], bool, date]] = [
    (
        "returns true for renewable VA prescription",
        fhir(refills=1, expiration=-30, dispenses=TWO),
        True,
        TODAY,
    ),
    (
        "returns true when expired with remaining refills",
        fhir(refills=5, expiration=-30),
        True,
        TODAY,
    ),
    (
        "returns true when not expired but refills exhausted",
        fhir(refills=1, expiration=30, dispenses=TWO),
        True,
        TODAY,
    ),
    (
        "returns false when status is completed",
        fhir(status="completed", refills=1, expiration=-30),
        False,
        TODAY,
    ),
    (
        "returns false when status is cancelled",
        fhir(status="cancelled", refills=1, expiration=-30),
        False,
        TODAY,
    ),
    (
        "returns false when status is on-hold",
        fhir(status="on-hold", refills=1, expiration=-30),
        False,
        TODAY,
    ),
    (
        "returns false for documented/non-VA medications",
        fhir(refills=1, expiration=-30, source="NV"),
        False,
        TODAY,
    ),
    (
        "returns false for unclassified medications",
        fhir(refills=1, expiration=-30, source="uncategorized"),
        False,
        TODAY,
    ),
    (
        "returns false for pharmacy charges",
        fhir(refills=1, expiration=-30, source="pharmacy_charges"),
        False,
        TODAY,
    ),
    (
        "returns false for inpatient medications",
        fhir(refills=1, expiration=-30, source="inpatient"),
        False,
        TODAY,
    ),
    (
        "returns false for clinic administered (outpatient) medications",
        fhir(refills=1, expiration=-30, source="clinic_administered"),
        False,
        TODAY,
    ),
    (
        "returns false when no dispenses exist",
        fhir(refills=1, expiration=-30, dispenses=()),
        False,
        TODAY,
    ),
    ("returns true with one completed dispense", fhir(refills=0, expiration=-30), True, TODAY),
    (
        "returns true with multiple completed dispenses",
        fhir(refills=1, expiration=-30, dispenses=("completed",) * 3),
        True,
        TODAY,
    ),
    (
        "returns false when validity period end is missing",
        fhir(refills=1, expiration=None),
        False,
        TODAY,
    ),
    ("returns false when validity period is nil", fhir(refills=1, expiration=None), False, TODAY),
    (
        "returns false when validity period end is nil",
        fhir(refills=1, expiration=None),
        False,
        TODAY,
    ),
    ("returns true when expired 1 day ago", fhir(refills=1, expiration=-1), True, TODAY),
    ("returns true when expired 119 days ago", fhir(refills=1, expiration=-119), True, TODAY),
    (
        "returns true at exactly 120 days (boundary)",
        fhir(refills=1, expiration="2025-09-17T12:00:00Z"),
        True,
        BOUNDARY_DAY,
    ),
    (
        "returns false when expired 121 days ago",
        fhir(refills=1, expiration="2025-09-16T11:59:59Z"),
        False,
        BOUNDARY_DAY,
    ),
    ("returns false when expired 150 days ago", fhir(refills=1, expiration=-150), False, TODAY),
    (
        "returns true when not yet expired (future date)",
        fhir(refills=0, expiration=30),
        True,
        TODAY,
    ),
    (
        "returns false when not expired and has remaining refills",
        fhir(refills=5, expiration=30),
        False,
        TODAY,
    ),
    (
        "returns true when expired regardless of remaining refills",
        fhir(refills=5, expiration=-30),
        True,
        TODAY,
    ),
    (
        "returns true when refills exhausted regardless of expiration",
        fhir(refills=1, expiration=30, dispenses=TWO),
        True,
        TODAY,
    ),
    (
        "returns false when dispense is in-progress",
        fhir(refills=1, expiration=-30, dispenses=("in-progress",)),
        False,
        TODAY,
    ),
    (
        "returns false when dispense is in preparation",
        fhir(refills=1, expiration=-30, dispenses=("preparation",)),
        False,
        TODAY,
    ),
    (
        "returns false when refill requested via web/mobile extension",
        fhir(refills=1, expiration=-30, refill_requested=True),
        False,
        TODAY,
    ),
    ("returns true when refill extension is false", fhir(refills=1, expiration=-30), True, TODAY),
    (
        "returns true when extension URL does not contain refill-request",
        fhir(refills=1, expiration=-30),
        True,
        TODAY,
    ),
    (
        "returns false when both dispense in-progress and refill extension present",
        fhir(refills=1, expiration=-30, dispenses=("in-progress",), refill_requested=True),
        False,
        TODAY,
    ),
    (
        "handles missing dispense status gracefully",
        fhir(refills=1, expiration=-30, dispenses=("completed", None)),
        True,
        TODAY,
    ),
    ("handles missing extension array", fhir(refills=1, expiration=-30), True, TODAY),
    ("handles empty extension array", fhir(refills=1, expiration=-30), True, TODAY),
    (
        "handles prescription with multiple dispenses and mixed statuses",
        fhir(refills=1, expiration=-30, dispenses=("completed", "completed", "cancelled")),
        True,
        TODAY,
    ),
    (
        "fails renewal when one dispense is in-progress among completed ones",
        fhir(refills=1, expiration=-30, dispenses=("completed", "in-progress", "completed")),
        False,
        TODAY,
    ),
]
"""Every case of VA's spec (commit 66134411bd98e7c7a14bac7ce3b9c66bd4216e52) in which rxsm's
cross-check runs, by its ``it`` description, with VA's expected answer. The three 'edge cases' of a
nil, non-Hash or empty resource have no FHIR-level fields: rxsm does not cross-check them
(test_without_fhir_fields_there_is_no_cross_check)."""


@pytest.mark.parametrize(
    ("fields", "renewable", "today"),
    [row[1:] for row in OH_GATE_CASES],
    ids=[row[0] for row in OH_GATE_CASES],
)
def test_the_oracle_health_cross_check_answers_as_vas_spec(
    fields: dict[str, Any], renewable: bool, today: date
) -> None:
    rx = Prescription.model_validate({**OH_BASE, **fields})
    assert has_fhir_fields(rx)
    assert (oracle_health_gates(rx, today) == RENEWABLE_BY_GATES) is renewable


@pytest.mark.parametrize(
    ("fields", "renewable", "today"),
    [row[1:] for row in OH_GATE_CASES],
    ids=[row[0] for row in OH_GATE_CASES],
)
def test_the_cross_check_reports_and_never_overrides_isrenewable(
    fields: dict[str, Any], renewable: bool, today: date
) -> None:
    """VA's own isRenewable (the spec's answer) agrees; the opposite flag is followed anyway, and
    the disagreement reported."""
    agreeing = check_renewal(
        request(OH_BASE, {**fields, "isRenewable": renewable}, Ehr.ORACLE_HEALTH), today
    )
    assert (agreeing.renewable, agreeing.upstream_disagrees) == (renewable, False)

    opposite = check_renewal(
        request(OH_BASE, {**fields, "isRenewable": not renewable}, Ehr.ORACLE_HEALTH), today
    )
    assert opposite.upstream_disagrees
    assert opposite.renewable is (not renewable)


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        (fhir(status="completed"), Refusal.COMPLETED),
        (fhir(status="stopped"), Refusal.DISCONTINUED),
        (fhir(status="on-hold"), Refusal.ON_HOLD),
        (fhir(status="draft"), Refusal.UNKNOWN_STATUS),
        (fhir(source="NV"), Refusal.NON_VA),
        (fhir(source="inpatient"), Refusal.NOT_VA_PRESCRIPTION),
        (fhir(dispenses=()), Refusal.NEVER_DISPENSED),
        (fhir(expiration=None), Refusal.NO_EXPIRATION_DATE),
        (fhir(expiration=-121), Refusal.EXPIRED_OVER_120_DAYS),
        (fhir(refills=2, expiration=30), Refusal.REFILLABLE),
        (fhir(refills=2, expiration=0), Refusal.REFILLABLE),
        (fhir(refills=0, expiration=30, refill_requested=True), Refusal.REFILL_IN_PROCESS),
    ],
    ids=lambda value: value.value if isinstance(value, Refusal) else None,
)
def test_when_both_refuse_the_failing_gate_says_why(
    fields: dict[str, Any], refusal: Refusal
) -> None:
    """An expiration date of today is not expired yet: rxsm measures in days, and the date is the
    last day the prescription is valid (oracle_health_gates)."""
    verdict = check_renewal(
        request(OH_BASE, {**fields, "isRenewable": False}, Ehr.ORACLE_HEALTH), TODAY
    )
    assert (verdict.refusal, verdict.upstream_disagrees) == (refusal, False)


def test_without_fhir_fields_there_is_no_cross_check() -> None:
    """VA's 'nil / non-Hash / empty resource' cases: nothing to check, isRenewable decides."""
    partial = {"medicationRequestStatus": "completed", "medicationCategory": "inpatient"}
    for changes in ({}, partial):
        rx = request(OH_BASE, changes, Ehr.ORACLE_HEALTH).prescription
        assert not has_fhir_fields(rx)
        verdict = check_renewal(request(OH_BASE, changes, Ehr.ORACLE_HEALTH), TODAY)
        assert (verdict.refusal, verdict.upstream_disagrees) == (None, False)


@pytest.mark.parametrize(
    ("repeats", "completed", "category", "remaining"),
    [
        (0, 0, "va_prescription", 0),
        (0, 1, "va_prescription", 0),
        (3, 0, "va_prescription", 3),
        (3, 1, "va_prescription", 3),
        (3, 2, "va_prescription", 2),
        (3, 4, "va_prescription", 0),
        (3, 9, "va_prescription", 0),
        (3, 1, "documented_non_va", 0),
        (3, 1, "clinic_administered", 0),
    ],
)
def test_oracle_health_refills_remaining(
    repeats: int, completed: int, category: str, remaining: int
) -> None:
    """vets-api oracle_health_prescription_adapter.rb#extract_refill_remaining: 0 when non_va_med?,
    else repeats - max(completed - 1, 0), floored at 0."""
    rx = Prescription.model_validate(
        {
            **OH_BASE,
            "numberOfRepeatsAllowed": repeats,
            "completedDispenseCount": completed,
            "medicationCategory": category,
        }
    )
    assert oh_refills_remaining(rx) == remaining


def test_the_veterans_facilities_decide_which_rules_apply() -> None:
    """The same record without isRenewable: at an OH station VA would not show the link; at a
    VistA station VA's VistA rule renews it (Active, 0 refills, not refillable)."""
    record = {**OH_BASE, "isRenewable": None}
    at_oh = check_renewal(request(record, {}, Ehr.ORACLE_HEALTH), TODAY)
    at_vista = check_renewal(request(record, {}, Ehr.VISTA), TODAY)
    assert (at_oh.ehr, at_oh.refusal) == (Ehr.ORACLE_HEALTH, Refusal.RENEWABILITY_UNKNOWN)
    assert (at_vista.ehr, at_vista.refusal) == (Ehr.VISTA, None)


@pytest.mark.parametrize("refusal", list(Refusal))
def test_every_refusal_tells_a_person_what_to_do(refusal: Refusal) -> None:
    assert refusal.message.endswith(".")
    assert len(refusal.message.split()) >= 8
    assert "isRenewable" not in refusal.message and "dispStatus" not in refusal.message
