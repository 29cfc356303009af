"""The renewal service and the journey service end to end on the real broker: ingress over HTTP and
Kafka, idempotency, refusals, the journey following each renewal through SM (and telling meds when it
closed), dead letters attributed to the consumer that refused them and never to the journey's own
bookkeeping, the intake's stall, and the SRE's list of renewals."""

import base64
import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
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
    response = await flow.journey.get(f"/v1/renewals/{renewal_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def intake(flow: Flow, renewal_id: str) -> dict[str, Any]:
    """The renewal request as the renewal service's intake knows it."""
    response = await flow.renewal.get(f"/v1/renewals/{renewal_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


TO_THE_DRAFT = ("requested", "care_team_resolved", "draft_created")


def reached(
    flow: Flow, renewal_id: str, status: str, steps: tuple[str, ...] = ()
) -> Callable[[], Any]:
    """A probe for ``eventually``: the journey once it has ``status`` and each of ``steps``. The
    journey reads its topics in no fixed order between them, so it may hear of a draft a moment
    before it reads meds' request (the renewal is not found until then)."""

    async def probe() -> dict[str, Any] | None:
        response = await flow.journey.get(f"/v1/renewals/{renewal_id}")
        if response.status_code == 404:
            return None
        found: dict[str, Any] = response.json()
        recorded = {step["step"] for step in found["steps"]}
        return found if found["status"] == status and recorded >= set(steps) else None

    return probe


async def records_on(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every JSON record on ``topic`` so far (up to its end offsets now) that satisfies ``match``."""
    return [value for _, _, value in await positioned(bootstrap, topic, match)]


async def positioned(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool]
) -> list[tuple[TopicPartition, int, dict[str, Any]]]:
    """``records_on``, with each record's partition and offset."""
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
        found: list[tuple[TopicPartition, int, dict[str, Any]]] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                for record in records:
                    value = _json(record.value)
                    if record.offset < ends[partition] and value is not None and match(value):
                        found.append((partition, record.offset, value))
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
    assert later.json()["status"] == "requested", "on Kafka: the journey says where it is"

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
        response = await flow.journey.get(f"/v1/renewals/by-idempotency-key/{key}")
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
    how = {source: (e.pop("source"), e.pop("idempotency_key")) for source, e in events.items()}
    assert events["kafka"] == events["http"]
    assert how == {"kafka": ("kafka", key), "http": ("http", None)}

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

    renewal_id = refused.json()["renewal_id"]
    found = await eventually(reached(flow, renewal_id, "refused"))
    assert found["failure"] == {"tool": "meds", "step": "refused", "error_code": code}
    assert found["open"] is False
    own = await intake(flow, renewal_id)
    assert (own["status"], own["failure"]["error_code"]) == ("refused", code)
    assert await records_on(flow.bootstrap, topics.RENEWAL_REQUESTED, about(renewal_id)) == []
    [published] = await records_on(flow.bootstrap, topics.RENEWAL_REFUSED, about(renewal_id))
    assert published["code"] == code
    assert "prescription" not in published and "veteran_id" not in published
    counted = (await flow.journey.get("/metrics")).text
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
        response = await flow.journey.get(f"/v1/renewals/by-idempotency-key/{key}")
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

    async def closed_for_meds() -> dict[str, Any] | None:
        found = await intake(flow, renewal_id)
        return found if not found["open"] else None

    told = await eventually(closed_for_meds)
    assert told["status"] == "care_team_unavailable", "the journey told meds how it closed"
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


def counted(exposition: str, metric: str, **labels: str) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in exposition.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(metric + "{") and all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def meds_failures(exposition: str) -> tuple[float, float]:
    """What a service counts as meds' failures: dead letters by tool, and failed steps by tool."""
    return (
        counted(exposition, "rxsm_dead_letters_total", tool="meds"),
        counted(exposition, "rxsm_renewals_total", tool="meds", outcome="failure"),
    )


async def every_metrics(flow: Flow) -> dict[str, str]:
    clients = {"renewal": flow.renewal, "careteam": flow.careteam}
    clients |= {"messaging": flow.messaging, "journey": flow.journey}
    return {name: (await client.get("/metrics")).text for name, client in clients.items()}


async def journey_read_past(flow: Flow, partition: TopicPartition, offset: int) -> bool | None:
    """The journey's consumer group has committed past ``offset`` on ``partition``: it has read
    (and settled) every record up to it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=flow.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets("rxsm-journey", partitions=[partition])
    finally:
        await admin.close()
    committed = offsets.get(partition)
    return True if committed is not None and committed.offset > offset else None


async def test_a_poison_record_on_an_sm_topic_is_an_sm_step_only_and_never_counted_as_meds(
    flow: Flow,
) -> None:
    """The defect of issue 14, on the real broker: a poison record on SM's care-teams topic is
    refused by SM's messaging consumer and by the journey ledger, which reads the topic too. The
    ledger ran as meds and showed its own refusal as a meds step beside SM's, and counted it as
    meds'. Now its refusal is bookkeeping: on the dead-letter topic under the journey service's name
    and tool, never a step of the journey, never meds'."""
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted", TO_THE_DRAFT))
    before = await every_metrics(flow)

    await produce(flow.bootstrap, topics.CARE_TEAMS, b"{not json", renewal_id.encode())

    key = base64.b64encode(renewal_id.encode()).decode()

    async def both_refused() -> list[tuple[TopicPartition, int, dict[str, Any]]] | None:
        found = await positioned(flow.bootstrap, topics.DEAD_LETTER, lambda e: e.get("key") == key)
        groups = {letter["consumer_group"] for _, _, letter in found}
        return found if {"rxsm-messaging", "rxsm-journey"} <= groups else None

    letters = await eventually(both_refused)
    assert sorted((letter["consumer_group"], letter["tool"]) for _, _, letter in letters) == [
        ("rxsm-journey", "journey"),
        ("rxsm-messaging", "sm"),
    ]
    [partition] = {tp for tp, _, _ in letters}
    await eventually(lambda: journey_read_past(flow, partition, max(o for _, o, _ in letters)))

    found = await journey(flow, renewal_id)
    [letter] = [step for step in found["steps"] if step["step"] == "dead_lettered"]
    assert (letter["tool"], letter["topic_owner"], letter["refused_by"]) == (
        "sm",
        "sm",
        "rxsm-messaging",
    )
    assert (letter["topic"], letter["error_code"]) == (topics.CARE_TEAMS, "ValidationError")
    assert letter["detail"].startswith("messaging: ")
    assert [step["tool"] for step in found["steps"]].count("meds") == 1, "meds' request alone"
    assert found["status"] == "drafted", "it blocks no awaited step"

    after = await every_metrics(flow)
    for name in after:
        assert meds_failures(after[name]) == meds_failures(before[name]), name
    assert counted(after["journey"], "rxsm_dead_letters_total", tool="journey") == (
        counted(before["journey"], "rxsm_dead_letters_total", tool="journey") + 1
    )
    assert counted(after["messaging"], "rxsm_dead_letters_total", tool="sm") == (
        counted(before["messaging"], "rxsm_dead_letters_total", tool="sm") + 1
    )
    sm_letters = {"step": "dead_lettered", "tool": "sm", "outcome": "failure"}
    assert counted(after["journey"], "rxsm_renewals_total", **sm_letters) == (
        counted(before["journey"], "rxsm_renewals_total", **sm_letters) + 1
    )


async def test_a_renewal_whose_event_does_not_reach_kafka_is_stalled_on_meds(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka refuses every publish of the outbox relay: the renewal is saved with its event staged
    (202), the journey never hears of it, and after the stall timeout the renewal service's intake
    says it is stalled on meds (logged and counted once, on meds). Once Kafka takes the event again
    the renewal is requested, and the journey follows it."""
    relay = flow.apps["renewal"].state.relay
    monkeypatch.setattr(relay, "_broker", KafkaBroker("127.0.0.1:9"))
    stalls_before = counted(
        (await flow.renewal.get("/metrics")).text,
        "rxsm_renewals_total",
        step="stalled",
        tool="meds",
    )
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert (accepted.status_code, accepted.json()["status"]) == (202, "accepted")
    renewal_id = accepted.json()["renewal_id"]

    async def stalled() -> dict[str, Any] | None:
        found = await intake(flow, renewal_id)
        return found if found["status"] == "stalled" else None

    found = await eventually(stalled, within=STALL_AFTER_SECONDS * 5)
    assert found["stalled"]["tool"] == "meds"
    assert found["stalled"]["waiting_for"] == "requested"
    assert found["open"] is True
    unknown = await flow.journey.get(f"/v1/renewals/{renewal_id}")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "renewal_not_found")
    stall_logs = [
        line
        for line in flow.log_lines()
        if line.get("event") == "renewal stalled" and line.get("renewal_id") == renewal_id
    ]
    assert stall_logs and stall_logs[0]["owner"] == "meds"
    stalls = counted(
        (await flow.renewal.get("/metrics")).text,
        "rxsm_renewals_total",
        step="stalled",
        tool="meds",
    )
    assert stalls == stalls_before + 1

    monkeypatch.undo()
    relay.notify()

    found = await eventually(reached(flow, renewal_id, "drafted", TO_THE_DRAFT))
    assert found["steps"][0]["step"] == "requested"
    assert found["stalled"] is None
    assert (await intake(flow, renewal_id))["status"] == "requested"


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

    await eventually(reached(flow, refused.json()["renewal_id"], "refused"))
    response = await flow.journey.get(
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

    one = await flow.journey.get("/v1/renewals", params={"status": "failed", "limit": 1})
    assert len(one.json()["renewals"]) == 1
    future = await flow.journey.get("/v1/renewals", params={"since": "2999-01-01T00:00:00Z"})
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
    response = await flow.journey.get("/v1/renewals", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert response.json()["message"].startswith("Fix the request")
