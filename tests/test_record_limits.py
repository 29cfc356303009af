"""The limits of a renewal request's fields (schemas/records.py, rxsm's own: VA states none) refuse
what is over them, naming the field, and bound the request so that the event of any request they let
through fits in one Kafka record."""

from uuid import uuid4

import pytest
from pydantic import ValidationError

from plumbing.outbox import EVENT_MAX_BYTES, record_size
from plumbing.publishing import EVENT_TYPE_HEADER
from schemas.events import RenewalRequested
from schemas.records import (
    CODE_LENGTH,
    INSTRUCTIONS_LENGTH,
    MEDICATION_NAME_LENGTH,
    MOST_COUNTED,
    MOST_REFILL_RECORDS,
    NAME_LENGTH,
    REASON_LENGTH,
    Prescription,
    RenewalRequest,
)
from schemas.vocabulary import Ehr

TEXT_LIMITS = {
    "prescriptionName": MEDICATION_NAME_LENGTH,
    "prescriptionNumber": CODE_LENGTH,
    "dispStatus": CODE_LENGTH,
    "refillStatus": CODE_LENGTH,
    "prescriptionSource": CODE_LENGTH,
    "facilityName": NAME_LENGTH,
    "sig": INSTRUCTIONS_LENGTH,
    "reason": REASON_LENGTH,
    "providerFirstName": NAME_LENGTH,
    "providerLastName": NAME_LENGTH,
    "quantity": CODE_LENGTH,
}
WIDEST = "\U0001f48a"
"""A character JSON may write as 12 bytes (``\\ud83d\\udc8a``): the widest a text can get."""


@pytest.mark.parametrize("field", list(TEXT_LIMITS))
def test_each_text_field_takes_its_limit_and_refuses_one_more_naming_itself(field: str) -> None:
    limit = TEXT_LIMITS[field]
    Prescription.model_validate({"prescriptionId": "1", field: "x" * limit})
    with pytest.raises(ValidationError) as refused:
        Prescription.model_validate({"prescriptionId": "1", field: "x" * (limit + 1)})
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [
        ((field,), "string_too_long")
    ]


def test_a_2_mb_sig_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        Prescription(prescriptionId="1", sig="x" * 2_000_000)
    assert refused.value.errors()[0]["loc"] == ("sig",)


def test_counts_and_refill_records_are_bounded() -> None:
    overs: list[dict[str, object]] = [
        {"refillRemaining": MOST_COUNTED + 1},
        {"numberOfRepeatsAllowed": MOST_COUNTED + 1},
        {"rxRfRecords": [{}] * (MOST_REFILL_RECORDS + 1)},
    ]
    for over in overs:
        with pytest.raises(ValidationError):
            Prescription.model_validate({"prescriptionId": "1", **over})


def largest_request() -> RenewalRequest:
    """Every bounded field at its limit, in the widest characters."""
    return RenewalRequest.model_validate(
        {
            "veteranId": "V" * 64,
            "facilities": [{"stationNumber": "612A4B", "ehr": "vista"}] * 50,
            "prescription": {
                "prescriptionId": WIDEST * 64,
                "stationNumber": WIDEST * 16,
                **{field: WIDEST * limit for field, limit in TEXT_LIMITS.items()},
                "refillRemaining": MOST_COUNTED,
                "dispenseCount": MOST_COUNTED,
                "completedDispenseCount": MOST_COUNTED,
                "numberOfRepeatsAllowed": MOST_COUNTED,
                "expirationDate": "2026-09-30T04:00:00.000Z",
                "sortedDispensedDate": "2026-09-30",
                "dispensedDate": "2026-09-30",
                "orderedDate": "2026-09-30",
                "isRefillable": False,
                "isRenewable": True,
                "refillRequested": False,
                "dispenseInProgress": False,
                "medicationRequestStatus": "entered-in-error",
                "medicationCategory": "clinic_administered",
                "rxRfRecords": [{"expirationDate": "2026-09-30"}] * MOST_REFILL_RECORDS,
            },
        }
    )


def test_the_event_of_the_largest_request_the_limits_allow_fits_in_a_kafka_record() -> None:
    request = largest_request()
    event = RenewalRequested(
        renewal_id=uuid4(),
        veteran_id=request.veteranId,
        ehr=Ehr.VISTA,
        prescription=request.prescription,
        vista_stations=[f.stationNumber for f in request.facilities],
    )
    value = event.model_dump_json().encode()
    headers = {EVENT_TYPE_HEADER: event.event_type, "traceparent": "0" * 55}

    assert record_size(event.key, value, headers) < EVENT_MAX_BYTES / 4
