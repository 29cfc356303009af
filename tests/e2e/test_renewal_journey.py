"""The renewal service end to end on the real broker: ingress over HTTP and Kafka, idempotency,
refusals, the journey ledger following each renewal through SM, and the SRE's list of renewals."""

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from schemas import topics
from schemas.events import MessageSendFailed, RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr
from tests.e2e.conftest import STALL_AFTER_SECONDS, Flow
from tests.support import bearer, eventually

VETERAN = "1012845331V153043"  # VistA only, Cheyenne (442): one allowed care team
UNKNOWN_TO_SM = "1000000001V000001"  # in no care team directory: SM has no team for them


def renewal_request(veteran_id: str = VETERAN, **changes: Any) -> dict[str, Any]:
    return {
        "veteranId": veteran_id,
        "prescription": {
            "prescriptionId": str(uuid4()),
            "prescriptionName": "ATORVASTATIN 40MG TAB",
            "prescriptionNumber": "3636712",
            "dispStatus": "Active",
            "refillRemaining": 0,
            "expirationDate": (date.today() + timedelta(days=45)).isoformat(),
            "isRefillable": False,
            "isRenewable": True,
            "prescriptionSource": "VA",
            "stationNumber": "442",
            "sig": "TAKE ONE TABLET BY MOUTH AT BEDTIME",
            "providerFirstName": "Jane",
            "providerLastName": "Smith",
            "quantity": 90,
            "sortedDispensedDate": (date.today() - timedelta(days=80)).isoformat(),
            **changes,
        },
        "facilities": [{"stationNumber": "442", "ehr": "vista"}],
    }


async def journey(flow: Flow, renewal_id: str) -> dict[str, Any]:
    response = await flow.renewal.get(f"/v1/renewals/{renewal_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


TO_THE_DRAFT = ("requested", "care_team_resolved", "draft_created")


def reached(
    flow: Flow, renewal_id: str, status: str, steps: tuple[str, ...] = ()
) -> Callable[[], Any]:
    """A probe for ``eventually``: the journey once it has ``status`` and each of ``steps``. The
    ledger reads its topics in no fixed order between them, so a renewal may be ``drafted`` a moment
    before the ledger has read its ``requested`` step back."""

    async def probe() -> dict[str, Any] | None:
        found = await journey(flow, renewal_id)
        recorded = {step["step"] for step in found["steps"]}
        return found if found["status"] == status and recorded >= set(steps) else None

    return probe


async def records_on(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every JSON record on ``topic`` so far (up to its end offsets now) that satisfies ``match``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = await eventually(lambda: _assigned(consumer))
        ends = await consumer.end_offsets(partitions)
        found: list[dict[str, Any]] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    value = _json(record.value)
                    if record.offset < ends[partition] and value is not None and match(value):
                        found.append(value)
        return found
    finally:
        await consumer.stop()


def _json(value: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def _assigned(consumer: AIOKafkaConsumer) -> list[TopicPartition] | None:
    return sorted(consumer.assignment()) or None


async def produce(bootstrap: str, topic: str, value: bytes, key: bytes, **headers: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        encoded = [(name.replace("_", "-"), v.encode()) for name, v in headers.items()]
        await producer.send_and_wait(topic, value, key=key, headers=encoded)
    finally:
        await producer.stop()


def about(renewal_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("renewal_id") == renewal_id


async def test_an_eligible_request_reaches_the_ledger_as_requested_then_drafted(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"
    renewal_id, trace_id = accepted.json()["renewal_id"], accepted.json()["trace_id"]

    found = await eventually(reached(flow, renewal_id, "drafted", TO_THE_DRAFT))
    steps = [(step["step"], step["tool"]) for step in found["steps"]]
    assert steps == [("requested", "meds"), ("care_team_resolved", "sm"), ("draft_created", "sm")]
    times = [step["at"] for step in found["steps"]]
    assert times == sorted(times)
    assert found["trace_id"] == trace_id
    assert (found["source"], found["ehr"], found["open"]) == ("http", "vista", True)
    assert found["cohort"] == flow.apps["renewal"].state.flags.cohort(VETERAN)
    assert found["failure"] is None and found["stalled"] is None


async def test_a_duplicate_request_makes_no_second_event(flow: Flow) -> None:
    body = renewal_request()
    key = {"Idempotency-Key": str(uuid4())}
    first = await flow.renewal.post("/v1/renewals", json=body, headers=key)
    same_key = await flow.renewal.post("/v1/renewals", json=body, headers=key)
    still_open = await flow.renewal.post("/v1/renewals", json=body)
    assert first.status_code == same_key.status_code == still_open.status_code == 202
    renewal_id = first.json()["renewal_id"]
    assert same_key.json()["renewal_id"] == still_open.json()["renewal_id"] == renewal_id
    await eventually(reached(flow, renewal_id, "drafted"))
    later = await flow.renewal.post("/v1/renewals", json=body, headers=key)
    assert (later.status_code, later.json()["renewal_id"]) == (202, renewal_id)
    assert later.json()["status"] == "drafted"

    events = await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, about(renewal_id))
    assert len(events) == 1


async def test_the_kafka_ingress_makes_the_same_event_as_http(flow: Flow) -> None:
    key = str(uuid4())
    body = renewal_request()
    await produce(
        flow.bootstrap,
        topics.RENEWAL_REQUESTS,
        RenewalRequest.sealed_record(body),
        key=key.encode(),
        Idempotency_Key=key,
    )

    async def by_key() -> dict[str, Any] | None:
        response = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
        return response.json() if response.status_code == 200 else None

    from_kafka = await eventually(by_key)
    assert from_kafka["source"] == "kafka"
    over_http = await flow.renewal.post(
        "/v1/renewals", json=renewal_request(prescriptionId=str(uuid4()))
    )
    ids = {"kafka": from_kafka["renewal_id"], "http": over_http.json()["renewal_id"]}
    events = {
        source: RenewalRequested.model_validate(
            (await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, about(renewal_id)))[0]
        ).model_dump(exclude={"event_id", "occurred_at", "renewal_id"})
        for source, renewal_id in ids.items()
    }
    for event in events.values():
        event["prescription"].pop("prescriptionId")
    assert events["kafka"] == events["http"]

    again = await flow.renewal.post("/v1/renewals", json=body, headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()["renewal_id"]) == (202, ids["kafka"])


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"refillRemaining": 2, "isRefillable": True, "isRenewable": False}, "refillable"),
        ({"dispStatus": "Discontinued"}, "discontinued"),
        ({"prescriptionSource": "NV", "dispStatus": "Active: Non-VA"}, "non_va"),
        (
            {
                "dispStatus": "Expired",
                "expirationDate": (date.today() - timedelta(days=121)).isoformat(),
            },
            "expired_over_120_days",
        ),
    ],
)
async def test_an_ineligible_request_is_refused_with_its_reason(
    flow: Flow, changes: dict[str, Any], code: str
) -> None:
    body = renewal_request(**changes)
    refused = await flow.renewal.post("/v1/renewals", json=body)
    assert refused.status_code == 422
    assert refused.json()["code"] == code
    assert refused.json()["message"].endswith(".")

    found = await journey(flow, refused.json()["renewal_id"])
    assert found["status"] == "refused"
    assert found["failure"] == {"tool": "meds", "step": "refused", "error_code": code}
    prescription_id = body["prescription"]["prescriptionId"]
    published = await records_on(
        flow.bootstrap,
        topics.RENEWAL_REQUESTED,
        lambda e: e.get("prescription", {}).get("prescriptionId") == prescription_id,
    )
    assert published == []
    counted = (await flow.renewal.get("/metrics")).text
    assert any(
        line.startswith("rxsm_renewals") and 'step="refused"' in line and f'reason="{code}"' in line
        for line in counted.splitlines()
    )


async def test_an_ineligible_request_on_kafka_is_recorded_not_lost(flow: Flow) -> None:
    key = str(uuid4())
    body = renewal_request(dispStatus="Active: On Hold")
    await produce(
        flow.bootstrap,
        topics.RENEWAL_REQUESTS,
        RenewalRequest.sealed_record(body),
        key=key.encode(),
        Idempotency_Key=key,
    )

    async def refused() -> dict[str, Any] | None:
        response = await flow.renewal.get(f"/v1/renewals/by-idempotency-key/{key}")
        return response.json() if response.status_code == 200 else None

    found = await eventually(refused)
    assert (found["status"], found["source"]) == ("refused", "kafka")
    assert found["failure"] == {"tool": "meds", "step": "refused", "error_code": "on_hold"}
    again = await flow.renewal.post("/v1/renewals", json=body, headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()["code"]) == (422, "on_hold")
    assert again.json()["renewal_id"] == found["renewal_id"]


async def test_no_care_team_is_a_failure_owned_by_sm_with_its_reason(flow: Flow) -> None:
    body = renewal_request(UNKNOWN_TO_SM)
    accepted = await flow.renewal.post("/v1/renewals", json=body)
    renewal_id = accepted.json()["renewal_id"]

    found = await eventually(reached(flow, renewal_id, "care_team_unavailable"))
    assert found["failure"] == {
        "tool": "sm",
        "step": "care_team_unavailable",
        "error_code": "no_associations",
    }
    assert found["open"] is False
    retried = await flow.renewal.post("/v1/renewals", json=body)
    assert retried.status_code == 202
    assert retried.json()["renewal_id"] != renewal_id, "a closed renewal may be requested anew"


async def test_a_failed_send_is_a_failure_owned_by_sm_with_its_error_code(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted"))
    draft = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(VETERAN))
    failed = MessageSendFailed(
        renewal_id=renewal_id,
        draft_id=draft.json()["id"],
        veteran_id=VETERAN,
        recipient_id=draft.json()["recipient_id"],
        ehr=Ehr.ORACLE_HEALTH,
        error_code="SM98",
        retryable=False,
    )
    await produce(flow.bootstrap, topics.MESSAGES, failed.model_dump_json().encode(), failed.key)

    found = await eventually(reached(flow, renewal_id, "send_failed"))
    assert found["failure"] == {"tool": "sm", "step": "message_send_failed", "error_code": "SM98"}
    assert found["steps"][-1]["retryable"] is False
    assert found["open"] is True, "the draft stays in SM: the Veteran may send it again"


async def test_a_dead_letter_about_a_renewal_is_a_step_of_its_journey(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted"))

    await produce(flow.bootstrap, topics.CARE_TEAMS, b"{not json", renewal_id.encode())

    async def refused_by_sm() -> dict[str, Any] | None:
        found = await journey(flow, renewal_id)
        letters = [
            step
            for step in found["steps"]
            if step["step"] == "dead_lettered" and step["tool"] == "sm"
        ]
        return letters[0] if letters else None

    letter = await eventually(refused_by_sm)
    assert letter["detail"].startswith("messaging: ")
    assert (await journey(flow, renewal_id))["status"] == "drafted", "it blocks no awaited step"


async def test_a_renewal_whose_event_does_not_reach_kafka_is_stalled_on_meds(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka refuses every publish of the outbox relay: the renewal is saved with its event staged
    (202), after the stall timeout the ledger says it is stalled on meds, and once Kafka takes the
    event again the renewal moves on and the stall clears."""
    relay = flow.apps["renewal"].state.relay
    monkeypatch.setattr(relay, "_broker", KafkaBroker("127.0.0.1:9"))
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert (accepted.status_code, accepted.json()["status"]) == (202, "accepted")
    renewal_id = accepted.json()["renewal_id"]

    found = await eventually(reached(flow, renewal_id, "stalled"), within=STALL_AFTER_SECONDS * 5)
    assert found["stalled"]["tool"] == "meds"
    assert found["stalled"]["waiting_for"] == "requested"
    assert found["steps"] == []
    stall_logs = [
        line
        for line in flow.log_lines()
        if line.get("event") == "renewal stalled" and line.get("renewal_id") == renewal_id
    ]
    assert stall_logs and stall_logs[0]["owner"] == "meds"
    listed = await flow.renewal.get("/v1/renewals", params={"status": "stalled", "since": "5m"})
    [stalled] = [r for r in listed.json()["renewals"] if r["renewal_id"] == renewal_id]
    assert stalled["stalled"]["tool"] == "meds"

    monkeypatch.undo()
    relay.notify()

    async def moving_again() -> dict[str, Any] | None:
        found = await journey(flow, renewal_id)
        recorded = {step["step"] for step in found["steps"]}
        return found if "requested" in recorded and found["status"] != "stalled" else None

    found = await eventually(moving_again)
    assert found["steps"][0]["step"] == "requested"
    assert found["stalled"] is None


async def test_failed_renewals_are_listed_with_the_tool_step_and_error_that_failed_them(
    flow: Flow,
) -> None:
    refused = await flow.renewal.post(
        "/v1/renewals", json=renewal_request(dispStatus="Discontinued")
    )
    no_team = await flow.renewal.post("/v1/renewals", json=renewal_request(UNKNOWN_TO_SM))
    fine = await flow.renewal.post("/v1/renewals", json=renewal_request())
    await eventually(reached(flow, no_team.json()["renewal_id"], "care_team_unavailable"))
    await eventually(reached(flow, fine.json()["renewal_id"], "drafted"))

    response = await flow.renewal.get(
        "/v1/renewals", params={"status": "failed,stalled", "since": "10m", "limit": 500}
    )

    assert response.status_code == 200, response.text
    listed = {r["renewal_id"]: r for r in response.json()["renewals"]}
    assert fine.json()["renewal_id"] not in listed
    unavailable = listed[no_team.json()["renewal_id"]]
    assert unavailable["status"] == "care_team_unavailable"
    assert unavailable["failure"] == {
        "tool": "sm",
        "step": "care_team_unavailable",
        "error_code": "no_associations",
    }
    assert unavailable["trace_id"] == no_team.json()["trace_id"]
    assert (unavailable["ehr"], unavailable["stalled"]) == ("vista", None)
    assert unavailable["cohort"] == flow.apps["renewal"].state.flags.cohort(UNKNOWN_TO_SM)
    assert listed[refused.json()["renewal_id"]]["failure"] == {
        "tool": "meds",
        "step": "refused",
        "error_code": "discontinued",
    }
    times = [r["updated_at"] for r in response.json()["renewals"]]
    assert times == sorted(times, reverse=True), "most recent first"
    assert all(r["status"] in FAILED_OR_STALLED for r in listed.values())

    one = await flow.renewal.get("/v1/renewals", params={"status": "failed", "limit": 1})
    assert len(one.json()["renewals"]) == 1
    future = await flow.renewal.get("/v1/renewals", params={"since": "2999-01-01T00:00:00Z"})
    assert future.json()["renewals"] == []


FAILED_OR_STALLED = {"refused", "care_team_unavailable", "send_failed", "dead_lettered", "stalled"}


@pytest.mark.parametrize(
    "params",
    [{"status": "failed,lost"}, {"since": "yesterday"}, {"limit": 0}],
    ids=["unknown status", "unreadable since", "limit below 1"],
)
async def test_a_bad_list_query_gets_a_422_that_says_what_to_fix(
    flow: Flow, params: dict[str, Any]
) -> None:
    response = await flow.renewal.get("/v1/renewals", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert response.json()["message"].startswith("Fix the request")
