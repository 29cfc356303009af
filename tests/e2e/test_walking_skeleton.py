"""The walking skeleton, end to end on the real broker: request -> care team -> draft -> send."""

from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer

from demo.requests import VETERAN, renewal_request
from schemas import topics
from tests.e2e.conftest import Flow
from tests.support import bearer, eventually, read_topic


async def draft_of(flow: Flow, renewal_id: str) -> dict[str, Any] | None:
    response = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(VETERAN))
    return response.json() if response.status_code == 200 else None


async def test_a_renewal_reaches_the_care_team_as_one_trace(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(str(uuid4())))
    assert accepted.status_code == 202, accepted.text
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]
    assert trace_id and len(trace_id) == 32

    draft = await eventually(lambda: draft_of(flow, renewal_id))
    assert draft["subject"] == "Renewal Needed"
    assert draft["category"] == "MEDICATIONS"
    assert draft["recipient_id"] == 1013155
    assert "Medication name, strength, and form: LISINOPRIL 10MG TAB" in draft["body"]
    assert "Prescription expiration date: March 5, 2027" in draft["body"]

    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(VETERAN))
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["message_id"]

    [event] = await read_topic(
        flow.bootstrap, topics.MESSAGES, lambda e: e.get("renewal_id") == renewal_id
    )
    assert event["event_type"] == "message.sent"
    assert event["message_id"] == message_id
    assert event["tool"] == "sm"
    assert "body" not in event

    services_in_trace = {
        span.resource.attributes["service.name"]
        for span in flow.spans.get_finished_spans()
        if format(span.context.trace_id, "032x") == trace_id
    }
    assert services_in_trace >= {"rxsm-renewal", "rxsm-careteam", "rxsm-messaging"}

    traced_lines = [line for line in flow.log_lines() if line.get("renewal_id") == renewal_id]
    steps = {line.get("step") for line in traced_lines if line.get("trace_id") == trace_id}
    assert {"renewal.request", "careteam.resolve", "draft.create"} <= steps
    assert all(line["tool"] in {"meds", "sm"} for line in traced_lines)


async def test_sending_twice_makes_one_message(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(str(uuid4())))
    renewal_id = accepted.json()["renewal_id"]
    draft = await eventually(lambda: draft_of(flow, renewal_id))

    first = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(VETERAN))
    second = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(VETERAN))
    assert first.status_code == second.status_code == 200
    assert first.json()["message_id"] == second.json()["message_id"]
    assert await draft_of(flow, renewal_id) is None, "a sent draft is gone, as in SM"


async def test_another_veteran_cannot_see_or_send_the_draft(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(str(uuid4())))
    renewal_id = accepted.json()["renewal_id"]
    draft = await eventually(lambda: draft_of(flow, renewal_id))

    stranger = bearer("9999999999V999999")
    assert (
        await flow.messaging.get(f"/v1/drafts/{draft['id']}", headers=stranger)
    ).status_code == 404
    send = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=stranger)
    assert send.status_code == 404
    assert (await flow.messaging.get(f"/v1/drafts/{draft['id']}")).status_code == 401


async def test_an_invalid_request_gets_a_422_that_says_what_to_fix(flow: Flow) -> None:
    body = renewal_request(str(uuid4()))
    body["prescription"]["refillRemaining"] = -1
    del body["veteranId"]
    response = await flow.renewal.post("/v1/renewals", json=body)
    assert response.status_code == 422
    fields = {problem["field"] for problem in response.json()["errors"]}
    assert fields == {"veteranId", "prescription.refillRemaining"}
    assert "Fix the request" in response.json()["message"]


async def test_a_refillable_prescription_is_refused_with_its_reason(flow: Flow) -> None:
    body = renewal_request(str(uuid4()))
    body["prescription"].update(refillRemaining=3, isRefillable=True, isRenewable=False)
    response = await flow.renewal.post("/v1/renewals", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "refillable"


async def test_a_malformed_record_is_dead_lettered_and_the_consumer_keeps_going(flow: Flow) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer.start()
    try:
        junk = await producer.send_and_wait(topics.RENEWAL_REQUESTED, b"{not json", key=b"junk")
    finally:
        await producer.stop()

    [letter] = await read_topic(
        flow.bootstrap,
        topics.DEAD_LETTER,
        lambda e: (
            (e.get("service"), e.get("topic"), e.get("partition"), e.get("offset"))
            == ("careteam", topics.RENEWAL_REQUESTED, junk.partition, junk.offset)
        ),
    )
    assert letter["service"] == "careteam"
    assert letter["tool"] == "sm"
    assert letter["attempts"] == 1
    assert "JSON" in letter["reason"] or "invalid" in letter["reason"]

    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request(str(uuid4())))
    assert await eventually(lambda: draft_of(flow, accepted.json()["renewal_id"]))


async def test_health(flow: Flow) -> None:
    for client in (flow.renewal, flow.careteam, flow.messaging):
        response: httpx.Response = await client.get("/health")
        assert response.json()["status"] == "ok"
