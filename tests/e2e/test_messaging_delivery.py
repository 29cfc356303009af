"""The messaging service's outbox and inbox on the real broker: its events reach Kafka after their
change commits, in order, and never for a change that rolled back; a care-teams event delivered twice
makes one draft and one ``draft.created``."""

import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import Connection

from plumbing.outbox import stage_all as real_stage_all
from schemas import topics
from schemas.events import CareTeamsResolved
from schemas.records import CareSystem, Prescription
from schemas.vocabulary import Cohort, Ehr, PickerKind
from services.messaging import handlers
from tests.e2e.conftest import Flow
from tests.e2e.test_messaging_drafts import (
    DENVER_PRIMARY,
    MIXED,
    draft_events,
    new_message,
    team,
)
from tests.e2e.test_messaging_send import outbox_events
from tests.support import bearer, eventually


def care_teams_resolved(cohort: Cohort | None = None) -> CareTeamsResolved:
    """Care teams resolved for a renewal of the mixed Veteran, suggesting Denver's VistA team."""
    return CareTeamsResolved(
        renewal_id=uuid4(),
        veteran_id=MIXED,
        ehr=Ehr.VISTA,
        cohort=cohort,
        prescription=Prescription(prescriptionId=str(uuid4())),
        care_systems=[
            CareSystem(
                stationNumber="554",
                careSystemName="Care system 554",
                ehr=Ehr.VISTA,
                teams=[team(DENVER_PRIMARY, "554", Ehr.VISTA)],
            )
        ],
        suggested_team_id=DENVER_PRIMARY,
        picker=PickerKind.AUTO,
    )


async def deliver(flow: Flow, event: CareTeamsResolved, times: int = 1) -> None:
    """Put ``event`` on the care-teams topic ``times`` times (a redelivery: same bytes, same id)."""
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(times):
            await producer.send_and_wait(
                topics.CARE_TEAMS, event.model_dump_json().encode(), key=event.key
            )
    finally:
        await producer.stop()


async def draft_of(flow: Flow, event: CareTeamsResolved) -> dict[str, Any]:
    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{event.renewal_id}/draft", headers=bearer(event.veteran_id)
        )
        return response.json() if response.status_code == 200 else None

    return await eventually(draft)


async def test_a_care_teams_event_delivered_twice_makes_one_draft_and_one_draft_created(
    flow: Flow,
) -> None:
    event = care_teams_resolved()
    await deliver(flow, event, times=2)
    draft = await draft_of(flow, event)

    async def handled_again() -> bool | None:
        return (
            any(
                line.get("event") == "care teams already handled"
                and line.get("renewal_id") == str(event.renewal_id)
                for line in flow.log_lines()
            )
            or None
        )

    await eventually(handled_again)
    assert await outbox_events(flow, draft["id"]) == ["draft.created"]
    [created] = await draft_events(flow, draft["id"])
    assert (created["event_type"], created["renewal_id"]) == (
        "draft.created",
        str(event.renewal_id),
    )


async def test_draft_events_reach_kafka_after_their_commit_in_order_and_refusals_none(
    flow: Flow,
) -> None:
    created = await new_message(flow)
    assert created.status_code == 201, created.text
    url, owner = f"/v1/drafts/{created.json()['id']}", bearer(MIXED)
    too_long = await flow.messaging.put(url, json={"subject": "x" * 51}, headers=owner)
    assert too_long.status_code == 422
    assert (await flow.messaging.put(url, json={"body": "Any time"}, headers=owner)).is_success
    assert (await flow.messaging.delete(url, headers=owner)).status_code == 204

    events = await draft_events(flow, created.json()["id"], count=3)
    assert [(e["event_type"], e.get("changed")) for e in events] == [
        ("draft.created", None),
        ("draft.updated", ["body"]),
        ("draft.deleted", None),
    ], "one partition, in commit order: the refused edit published nothing"


def failing_after_staging(
    rolled_back: list[str],
) -> Callable[[Connection, Sequence[dict[str, Any]]], None]:
    """``stage_all`` that stages, then fails its transaction once, remembering the event it
    staged."""

    def stage_all(connection: Connection, records: Sequence[dict[str, Any]]) -> None:
        real_stage_all(connection, records)
        if not rolled_back and records:
            rolled_back.append(str(records[0]["event_id"]))
            raise RuntimeError("the database went away before the commit")

    return stage_all


async def test_an_event_staged_in_a_transaction_that_rolled_back_is_never_published(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled_back: list[str] = []
    monkeypatch.setattr(handlers, "stage_all", failing_after_staging(rolled_back))
    event = care_teams_resolved()
    await deliver(flow, event)
    draft = await draft_of(flow, event)

    [created] = await draft_events(flow, draft["id"])
    assert rolled_back and created["event_id"] != rolled_back[0], (
        "the consumer's retry committed the draft; the first try's event is gone with its rollback"
    )
    assert await outbox_events(flow, draft["id"]) == ["draft.created"]


async def test_care_teams_outcomes_consumed_together_each_make_one_draft_in_their_own_trace(
    flow: Flow,
) -> None:
    """Outcomes published together reach the messaging service as one batch; each draft, and the
    ``draft.created`` event it stages, still belongs to the trace of the outcome that asked for it,
    and an outcome delivered twice in the batch still makes one draft."""
    events = [care_teams_resolved() for _ in range(4)]
    traces = {event.renewal_id: secrets.token_hex(16) for event in events}

    def traceparent(trace_id: str) -> bytes:
        return f"00-{trace_id}-{secrets.token_hex(8)}-01".encode()

    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.CARE_TEAMS,
                event.model_dump_json().encode(),
                key=event.key,
                headers=[("traceparent", traceparent(traces[event.renewal_id]))],
            )
            for event in [*events, events[0]]
        ]
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()

    drafts = [await draft_of(flow, event) for event in events]

    async def published_in(trace_id: str) -> bool | None:
        return (
            any(
                span.kind is SpanKind.PRODUCER
                and (span.attributes or {}).get("messaging.destination.name") == topics.DRAFTS
                and format(span.context.trace_id, "032x") == trace_id
                for span in flow.spans.get_finished_spans()
            )
            or None
        )

    for trace_id in traces.values():
        assert await eventually(partial(published_in, trace_id))
    assert await outbox_events(flow, drafts[0]["id"]) == ["draft.created"]
