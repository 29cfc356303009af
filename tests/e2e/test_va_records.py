"""VA's own prescription records, extra fields and all, through the whole flow on the real broker: the
Medications app's request over HTTP and on the Kafka ingress, care teams, and a draft whose body is the
one VA's builder writes (the expected bodies of tests/messaging/test_va_prefill.py, derived there from
vets-website's ``buildRxRenewalMessageBody``)."""

from typing import Any
from uuid import uuid4

import pytest

from schemas import topics
from schemas.records import RenewalRequest
from tests.e2e.conftest import Flow
from tests.e2e.test_careteam_resolution import OH, OH_ONLY, VISTA, VISTA_ONLY
from tests.e2e.test_renewal_journey import produce
from tests.messaging.test_va_prefill import EXPECTED, LABELS
from tests.support import bearer, eventually
from tests.va_fixtures import prescription_record

pytestmark = pytest.mark.kafka

PARKED = ("vets-website/active-parked-zero-refills-with-dispense-date.json", "23298058")
"""VistA, Active: Parked with no refills left and a fill on record: renewable on any day (vets-api
prescription_helper.rb#renewable)."""
OH_RENEWABLE = ("vets-website/prescriptionsListOH.json", "22377958")
"""Oracle Health at Spokane (668), ``isRenewable: true``: VA shows the renewal link."""


def va_request(
    fixture: tuple[str, str], veteran: str, facilities: list[dict[str, str]], station: str
) -> dict[str, Any]:
    """The Medications app's request for VA's record, as VA serves it (every field kept), placed at a
    station where the demo Veteran has care teams and given an id of its own."""
    record = prescription_record(*fixture)
    assert len(record) > 20, "VA's record, with the fields rxsm does not read"
    prescription = {**record, "stationNumber": station, "prescriptionId": f"va-{uuid4()}"}
    return {"veteranId": veteran, "prescription": prescription, "facilities": facilities}


def vas_body(fixture: tuple[str, str]) -> str:
    return "\n".join(
        f"{label}: {value}" for label, value in zip(LABELS, EXPECTED[fixture], strict=True)
    )


async def drafted(flow: Flow, renewal_id: str, veteran: str) -> dict[str, Any]:
    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(veteran)
        )
        return response.json() if response.status_code == 200 else None

    found: dict[str, Any] = await eventually(draft)
    return found


@pytest.mark.parametrize(
    ("fixture", "veteran", "facilities", "station"),
    [(PARKED, VISTA_ONLY, VISTA, "442"), (OH_RENEWABLE, OH_ONLY, OH, "668")],
    ids=["vista", "oracle_health"],
)
async def test_a_va_record_posted_becomes_the_draft_vas_builder_writes(
    flow: Flow,
    fixture: tuple[str, str],
    veteran: str,
    facilities: list[dict[str, str]],
    station: str,
) -> None:
    request = va_request(fixture, veteran, facilities, station)
    accepted = await flow.renewal.post("/v1/renewals", json=request)
    assert accepted.status_code == 202, accepted.text

    draft = await drafted(flow, accepted.json()["renewal_id"], veteran)

    assert (draft["subject"], draft["category"]) == ("Renewal Needed", "MEDICATIONS")
    assert draft["body"] == vas_body(fixture)


async def test_a_va_record_on_the_kafka_ingress_becomes_the_draft_vas_builder_writes(
    flow: Flow,
) -> None:
    key = str(uuid4())
    request = va_request(PARKED, VISTA_ONLY, VISTA, "442")
    await produce(
        flow.bootstrap,
        topics.RENEWAL_REQUESTS,
        RenewalRequest.sealed_record(request),
        key=key.encode(),
        Idempotency_Key=key,
    )

    async def accepted() -> str | None:
        response = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
        return str(response.json()["renewal_id"]) if response.status_code == 200 else None

    draft = await drafted(flow, await eventually(accepted), VISTA_ONLY)
    assert draft["body"] == vas_body(PARKED)
