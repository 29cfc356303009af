"""Contract tests on VA's own prescription records (tests/fixtures/va/prescriptions, see its SOURCES).

Each record goes through what the service runs: the RenewalRequest model (HTTP body and Kafka
record alike), then check_renewal. Every record parses, whatever else VA puts in it, and the verdict
is the one VA's code reaches for the same record on the day the fixture was recorded:

- VistA: vets-api modules/my_health/app/helpers/my_health/prescription_helper.rb#renewable
  (commit c7427ef69ee761c09db42a5eba96d29872928220), "VISTA_RULE" in the table;
- Oracle Health: the link of vets-website src/applications/mhv-medications/components/shared/
  SendRxRenewalMessage.jsx (commit e087b637635083949d7c79503b856d1a78531167) shows when
  ``isOracleHealth && isRenewable``, "OH_LINK" in the table.
"""

from datetime import date
from typing import Any, NamedTuple

import pytest
from pydantic import ValidationError

from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr
from services.renewal.domain import Refusal, check_renewal
from tests.va_fixtures import prescription_record, prescription_records

VETERAN = "1012845331V153043"

OH_LIST = "vets-website/prescriptionsListOH.json"
OH_E2E = "vets-website/oracle-health-prescriptions.json"
VISTA_LIST = "vets-website/prescriptionsList.json"
PARKED = "vets-website/active-parked-zero-refills-with-dispense-date.json"
EXPIRED = "vets-website/expired-prescription-details.json"
EMPTY_FIELDS = "vets-website/empty-field-prescription-details.json"
UHD_VISTA = "vets-api/prescriptions_response.vista.json"

EHR_OF = {
    OH_LIST: Ehr.ORACLE_HEALTH,
    OH_E2E: Ehr.ORACLE_HEALTH,
    VISTA_LIST: Ehr.VISTA,
    PARKED: Ehr.VISTA,
    EXPIRED: Ehr.VISTA,
    EMPTY_FIELDS: Ehr.VISTA,
    UHD_VISTA: Ehr.VISTA,
}
"""The Oracle Health files hold stations 668 (Spokane) and 653 (Roseburg), OH sites (domain.md
section 3); the others are VistA stations."""

RECORDED = {
    OH_LIST: date(2023, 8, 11),
    OH_E2E: date(2023, 8, 11),
    VISTA_LIST: date(2023, 8, 11),
    PARKED: date(2024, 4, 3),
    EXPIRED: date(2023, 9, 22),
    EMPTY_FIELDS: date(2025, 1, 2),
    UHD_VISTA: date(2025, 8, 29),
}
"""The day each record is judged on: when VA recorded it (the list's meta.updatedAt, the record's
modifiedDate, or the response's lastUpdatedTime), so the expected verdicts don't age."""


def renewal_request(name: str, record: dict[str, Any]) -> RenewalRequest:
    return RenewalRequest.model_validate(
        {
            "veteranId": VETERAN,
            "prescription": record,
            "facilities": [{"stationNumber": record["stationNumber"], "ehr": EHR_OF[name].value}],
        }
    )


ALL_RECORDS = [
    (name, record["prescriptionId"], record)
    for name in EHR_OF
    for record in prescription_records(name)
]


@pytest.mark.parametrize(
    ("name", "record"),
    [(name, record) for name, _, record in ALL_RECORDS],
    ids=[f"{name}:{prescription_id}" for name, prescription_id, _ in ALL_RECORDS],
)
def test_every_va_record_parses(name: str, record: dict[str, Any]) -> None:
    parsed = renewal_request(name, record).prescription
    assert parsed.prescriptionId == str(record["prescriptionId"])
    assert parsed.stationNumber == record["stationNumber"]
    assert parsed.isRenewable == record.get("isRenewable")
    assert parsed.dispStatus == (record["dispStatus"] or None)


def test_the_fixtures_hold_both_ehrs_and_every_record_is_judged() -> None:
    assert len(ALL_RECORDS) == 19
    assert {EHR_OF[name] for name, _, _ in ALL_RECORDS} == {Ehr.VISTA, Ehr.ORACLE_HEALTH}
    judged = {(row.file, row.prescription_id) for row in VERDICTS}
    assert judged == {(name, prescription_id) for name, prescription_id, _ in ALL_RECORDS}


class Verdict(NamedTuple):
    file: str
    prescription_id: int
    refusal: Refusal | None
    disagrees: bool
    why: str


VERDICTS = [
    Verdict(
        OH_LIST, 22377957, None, False, "OH_LINK: isRenewable true (refillable too: not checked)"
    ),
    Verdict(OH_LIST, 22377958, None, False, "OH_LINK: isRenewable true"),
    Verdict(OH_LIST, 22377960, None, False, "OH_LINK: isRenewable true, refill in process"),
    Verdict(OH_LIST, 22377962, None, False, "OH_LINK: isRenewable true, Expired"),
    Verdict(OH_LIST, 22377963, Refusal.NOT_RENEWABLE, False, "OH_LINK: isRenewable false"),
    Verdict(OH_LIST, 22377966, Refusal.ON_HOLD, False, "OH_LINK: isRenewable false; 'Hold'"),
    Verdict(
        OH_LIST,
        22377969,
        Refusal.NON_VA,
        False,
        "OH_LINK: isRenewable false; source NV (ExtraDetails.jsx hides it for non-VA too)",
    ),
    Verdict(OH_E2E, 22377956, None, False, "OH_LINK: isRenewable true"),
    Verdict(
        VISTA_LIST,
        22377956,
        Refusal.REFILLABLE,
        False,
        "VISTA_RULE: refill_remaining 5 is not zero; not Expired",
    ),
    Verdict(
        VISTA_LIST,
        22332759,
        Refusal.REFILL_IN_PROCESS,
        False,
        "VISTA_RULE: 'active: refill in process' is not 'active'; not Expired",
    ),
    Verdict(
        VISTA_LIST,
        22225375,
        None,
        False,
        "VISTA_RULE: Expired 2023-07-23 >= 2023-08-11 - 120 days, is_refillable false",
    ),
    Verdict(
        VISTA_LIST,
        22217099,
        None,
        False,
        "VISTA_RULE: Expired 2023-06-25 >= 2023-04-13, is_refillable false",
    ),
    Verdict(
        PARKED,
        23298058,
        None,
        False,
        "VISTA_RULE: 'active: parked', 0 refills, not refillable, one non-empty refill record",
    ),
    Verdict(
        EXPIRED,
        21296515,
        None,
        False,
        "VISTA_RULE: Expired 2023-09-21, a day before; refills (11) are not looked at",
    ),
    Verdict(
        EMPTY_FIELDS,
        23915785,
        Refusal.UNKNOWN_STATUS,
        False,
        "VISTA_RULE: dispStatus '' matches no branch (refillRemaining '' would count as 0)",
    ),
    Verdict(
        EMPTY_FIELDS,
        24936580,
        Refusal.REFILL_IN_PROCESS,
        False,
        "VISTA_RULE: 'active: refill in process' is not 'active' (raw MHV rxRfRecords)",
    ),
    Verdict(
        UHD_VISTA,
        28148665,
        Refusal.REFILLABLE,
        True,
        "VISTA_RULE: 11 refills left; upstream isRenewable true disagrees",
    ),
    Verdict(
        UHD_VISTA,
        28148545,
        Refusal.REFILL_IN_PROCESS,
        True,
        "VISTA_RULE: 'active: submitted' is not 'active'; upstream isRenewable true disagrees",
    ),
    Verdict(
        UHD_VISTA,
        5098027,
        Refusal.EXPIRED_OVER_120_DAYS,
        False,
        "VISTA_RULE: Expired 2004-05-05 < 2025-08-29 - 120 days; isRenewable false agrees",
    ),
]
"""Record -> VA's verdict -> why. ``disagrees``: the record's own isRenewable says the opposite of
VA's rule (VistA only here: the Oracle Health records carry no FHIR-level fields to cross-check)."""


@pytest.mark.parametrize(
    "row", VERDICTS, ids=[f"{row.file}:{row.prescription_id}" for row in VERDICTS]
)
def test_each_record_gets_vas_verdict(row: Verdict) -> None:
    body = renewal_request(row.file, prescription_record(row.file, row.prescription_id))
    verdict = check_renewal(body, RECORDED[row.file])
    assert verdict.ehr is EHR_OF[row.file]
    assert (verdict.refusal, verdict.upstream_disagrees) == (row.refusal, row.disagrees), row.why


@pytest.mark.parametrize(
    ("today", "refusal"),
    [
        (date(2024, 1, 19), None),
        (date(2024, 1, 20), Refusal.EXPIRED_OVER_120_DAYS),
    ],
    ids=["120 days after 2023-09-21", "121 days after"],
)
def test_the_window_on_a_va_record(today: date, refusal: Refusal | None) -> None:
    """VISTA_RULE's within_cut_off_date?: date >= Time.zone.today - 120.days."""
    body = renewal_request(EXPIRED, prescription_record(EXPIRED, 21296515))
    assert check_renewal(body, today).refusal is refusal


def test_an_unknown_field_is_ignored_but_a_wrong_type_is_refused() -> None:
    record = prescription_record(VISTA_LIST, 22225375)
    with_more = {**record, "someFieldVaAddsTomorrow": {"nested": [1, 2]}}
    assert renewal_request(VISTA_LIST, with_more).prescription == (
        renewal_request(VISTA_LIST, record).prescription
    )
    for field, value in (("refillRemaining", "several"), ("isRenewable", "yes")):
        with pytest.raises(ValidationError) as error:
            renewal_request(VISTA_LIST, {**record, field: value})
        assert [e["loc"] for e in error.value.errors()] == [("prescription", field)]


def test_rxsms_own_request_body_still_refuses_unknown_fields() -> None:
    body = renewal_request(VISTA_LIST, prescription_record(VISTA_LIST, 22225375)).model_dump(
        mode="json"
    )
    with pytest.raises(ValidationError):
        RenewalRequest.model_validate({**body, "veteranIdd": VETERAN})
