"""Limits where input enters, on the real broker, as clients hit them: every refusal is a clear
answer in the one Problem shape, and leaves nothing half-done.

- A request body over 256 KiB: 413 ``too_large``, before it is read (a 2-10 MB field used to be
  accepted, and its event then refused by Kafka).
- A field over its limit (schemas/records.py, services/messaging/domain.py): 422 naming the field.
- A draft body over 20,000 characters, or holding NUL, ESC or a bidi control (U+202E): 422 naming
  the field (and the character's code point); the draft keeps what it had.
- Upstream prescription text with such characters: the prefilled draft holds the text without them.
- No care team for a renewal: its draft answer says so, with SM's reason.
- A request whose event Kafka refuses all the same (a producer with a smaller limit): failed on meds
  with the reason, listed by ``rxsm outbox`` and counted on /metrics; the next request for the
  prescription starts a new renewal (it used to answer the dead one, for good).
- An ingress record over 512 KiB: dead-lettered with the reason, nothing saved.
"""

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from rxsm.cli import app
from schemas import topics
from schemas.records import RenewalRequest
from tests.e2e.conftest import Flow
from tests.e2e.test_messaging_drafts import PREFILLED_BODY, PRESCRIPTION, VISTA_ONLY
from tests.support import bearer, eventually, logging_kept, read_topic

pytestmark = pytest.mark.kafka

NO_ASSOCIATIONS = "1013599370V295311"
ALL_BLOCKED = "1012881470V086192"
MB = 1024 * 1024


def request_body(veteran_id: str = VISTA_ONLY, **changes: Any) -> dict[str, Any]:
    return {
        "veteranId": veteran_id,
        "prescription": {**PRESCRIPTION, "prescriptionId": str(uuid4()), **changes},
        "facilities": [{"stationNumber": "442", "ehr": "vista"}],
    }


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


async def renewal_draft(flow: Flow, body: dict[str, Any]) -> dict[str, Any]:
    accepted = await flow.renewal.post("/v1/renewals", json=body)
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]

    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(body["veteranId"])
        )
        return response.json() if response.status_code == 200 else None

    return await eventually(draft)


@pytest.mark.parametrize("megabytes", [2, 10])
async def test_a_renewal_with_a_field_of_megabytes_is_refused_and_the_next_one_is_new(
    flow: Flow, megabytes: int
) -> None:
    body = request_body(sig="TAKE ONE TABLET " * (megabytes * MB // 16))
    key = {"Idempotency-Key": str(uuid4())}

    refused = await flow.renewal.post("/v1/renewals", json=body, headers=key)

    assert_problem(refused, 413, "too_large")
    normal = {**body, "prescription": {**body["prescription"], "sig": PRESCRIPTION["sig"]}}
    first = await flow.renewal.post("/v1/renewals", json=normal)
    again = await flow.renewal.post("/v1/renewals", json=normal)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert again.json()["renewal_id"] == first.json()["renewal_id"], "one open renewal"
    draft = await renewal_draft(flow, request_body())
    assert draft["body"] == PREFILLED_BODY


async def test_a_field_over_its_limit_is_refused_naming_it(flow: Flow) -> None:
    refused = await flow.renewal.post(
        "/v1/renewals", json=request_body(sig="x" * 2_001, providerLastName="y" * 201)
    )

    problem = assert_problem(refused, 422, "invalid_request")
    assert {error["field"] for error in problem["errors"]} == {
        "prescription.sig",
        "prescription.providerLastName",
    }


async def test_a_10_mb_draft_body_is_refused_before_it_is_read_and_the_draft_keeps_its_own(
    flow: Flow,
) -> None:
    draft = await renewal_draft(flow, request_body())
    url = f"/v1/drafts/{draft['id']}"

    huge = await flow.messaging.put(
        url, json={"body": "x" * 10_000_000}, headers=bearer(VISTA_ONLY)
    )
    long = await flow.messaging.put(url, json={"body": "x" * 20_001}, headers=bearer(VISTA_ONLY))

    assert_problem(huge, 413, "too_large")
    problem = assert_problem(long, 422, "body_too_long")
    assert problem["errors"] == [{"field": "body", "problem": problem["message"]}]
    kept = await flow.messaging.get(url, headers=bearer(VISTA_ONLY))
    assert kept.json()["body"] == PREFILLED_BODY


@pytest.mark.parametrize(
    ("field", "character", "named"),
    [
        ("body", "\x00", "U+0000"),
        ("body", "\x1b", "U+001B"),
        ("body", "\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("subject", "\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ],
)
async def test_nul_esc_and_bidi_controls_are_refused_in_what_a_veteran_writes(
    flow: Flow, field: str, character: str, named: str
) -> None:
    draft = await renewal_draft(flow, request_body())
    url = f"/v1/drafts/{draft['id']}"

    refused = await flow.messaging.put(
        url, json={field: f"Please{character} renew"}, headers=bearer(VISTA_ONLY)
    )

    problem = assert_problem(refused, 422, "invalid_character")
    assert named in problem["message"] and problem["errors"][0]["field"] == field
    kept = (await flow.messaging.get(url, headers=bearer(VISTA_ONLY))).json()
    assert (kept["subject"], kept["body"]) == ("Renewal Needed", PREFILLED_BODY)
    written = "Please renew.\n\tThank you"
    edited = await flow.messaging.put(url, json={field: written}, headers=bearer(VISTA_ONLY))
    assert edited.status_code == 200 and edited.json()[field] == written


async def test_a_new_message_with_a_control_character_is_not_started(flow: Flow) -> None:
    refused = await flow.messaging.post(
        "/v1/drafts",
        json={
            "recipient_id": 1013155,
            "team_selection": "care_system_picker",
            "category": "OTHER",
            "subject": "Question",
            "body": "Hello\x00",
        },
        headers=bearer(VISTA_ONLY),
    )
    assert_problem(refused, 422, "invalid_character")


async def test_upstream_controls_are_taken_out_of_the_prefill_and_its_lines_kept(
    flow: Flow,
) -> None:
    draft = await renewal_draft(
        flow,
        request_body(
            prescriptionName="LISINOPRIL\x00 10MG TAB",
            sig="TAKE ONE TABLET\x1b BY MOUTH\nDAILY\u202e",
        ),
    )

    lines = draft["body"].split("\n")
    assert lines[0] == "Medication name, strength, and form: LISINOPRIL 10MG TAB"
    assert lines[2:4] == ["Instructions: TAKE ONE TABLET BY MOUTH", "DAILY"]
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(VISTA_ONLY))
    assert sent.status_code == 200, "what the prefill wrote passes every check of a message"


@pytest.mark.parametrize(
    ("veteran_id", "reason"), [(NO_ASSOCIATIONS, "no_associations"), (ALL_BLOCKED, "all_blocked")]
)
async def test_the_draft_answer_says_there_is_no_care_team_and_why(
    flow: Flow, veteran_id: str, reason: str
) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=request_body(veteran_id))
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]

    async def answer() -> httpx.Response | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(veteran_id)
        )
        return response if response.json()["code"] != "draft_not_found" else None

    problem = assert_problem(await eventually(answer), 404, "care_team_unavailable")
    assert problem["reason"] == reason
    care_teams = await flow.messaging.get(
        f"/v1/renewals/{renewal_id}/care-teams", headers=bearer(veteran_id)
    )
    assert assert_problem(care_teams, 404, "care_team_unavailable")["reason"] == reason
    stranger = await flow.messaging.get(
        f"/v1/renewals/{renewal_id}/draft", headers=bearer(VISTA_ONLY)
    )
    assert_problem(stranger, 404, "draft_not_found")


@contextmanager
def producer_limit(flow: Flow, max_bytes: int) -> Iterator[None]:
    """The renewal service's Kafka producer takes records of at most ``max_bytes`` for a while: a
    producer (or broker) whose limit is below rxsm's, so Kafka refuses an event the intake took."""
    producer = flow.apps["renewal"].state.broker.config.producer._producer.producer
    before = producer._max_request_size
    producer._max_request_size = max_bytes
    try:
        yield
    finally:
        producer._max_request_size = before


async def test_a_request_whose_event_kafka_refuses_fails_on_meds_and_the_next_one_is_new(
    flow: Flow,
) -> None:
    body = request_body(sig="TAKE ONE TABLET BY MOUTH DAILY WITH FOOD " * 40)
    with producer_limit(flow, 3_000):
        accepted = await flow.renewal.post("/v1/renewals", json=body)
        assert accepted.status_code == 202, accepted.text
        renewal_id = accepted.json()["renewal_id"]

        async def failed() -> dict[str, Any] | None:
            found = (await flow.renewal.get(f"/v1/renewals/{renewal_id}")).json()
            return found if found["status"] == "failed" else None

        intake = await eventually(failed)

    assert intake["open"] is False
    assert intake["failure"] == {
        "tool": "meds",
        "step": "requested",
        "error_code": "event_too_large",
    }

    async def journey() -> dict[str, Any] | None:
        found = await flow.journey.get(f"/v1/renewals/{renewal_id}")
        return found.json() if found.status_code == 200 else None

    failure = (await eventually(journey))["failure"]
    assert (failure["tool"], failure["error_code"]) == ("meds", "event_too_large")
    metrics = (await flow.renewal.get("/metrics")).text
    assert 'reason="event_too_large",step="failed",tool="meds"' in metrics
    assert re.search(r"^rxsm_outbox_set_aside [1-9]", metrics, re.MULTILINE)
    database = flow.apps["renewal"].state.sessions.kw["bind"].url
    with logging_kept():
        listed = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["outbox", "--service", "renewal", "--json"],
            env={"RXSM_DATABASE_URL": database.render_as_string(hide_password=False)},
        )
    assert listed.exit_code == 0, listed.output
    assert {(e["key"], e["event_type"], e["reason"]) for e in json.loads(listed.output)} >= {
        (renewal_id, "renewal.requested", "event_too_large")
    }

    again = await flow.renewal.post("/v1/renewals", json=body)
    assert again.status_code == 202 and again.json()["status"] == "accepted"
    assert again.json()["renewal_id"] != renewal_id, "the failed renewal no longer holds it"
    draft = await renewal_draft(flow, request_body())
    assert draft["body"] == PREFILLED_BODY


async def test_an_ingress_record_over_512_kib_is_dead_lettered_with_the_reason(flow: Flow) -> None:
    key = str(uuid4())
    document = request_body(sig="x" * 10)
    document["prescription"]["trackingList"] = ["x" * 600_000]
    record = RenewalRequest.sealed_record(document)
    assert len(record) > 512 * 1024

    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.RENEWAL_REQUESTS,
            record,
            key=key.encode(),
            headers=[("Idempotency-Key", key.encode())],
        )
    finally:
        await producer.stop()

    [letter] = await read_topic(
        flow.bootstrap,
        topics.DEAD_LETTER,
        lambda letter: (
            letter.get("topic") == topics.RENEWAL_REQUESTS
            and letter.get("headers", {}).get("Idempotency-Key") == key
        ),
    )
    assert letter["reason"].startswith("record_too_large: the record is ")
    assert (letter["tool"], letter["service"]) == ("meds", "renewal")
    missing = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
    assert missing.status_code == 404, "nothing was saved"
