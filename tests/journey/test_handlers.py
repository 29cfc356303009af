"""The journey use cases on a real SQLite ledger and outbox; Kafka is left out, so each test hands the
ledger the events meds and SM would publish, and reads what the journey stages for meds."""

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.outbox import OutboxBase, OutboxRow, ProcessedEventRow
from schemas import topics
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DeadLetter,
    DraftCreated,
    DraftDeleted,
    DraftUpdated,
    MessageSent,
    RenewalClosed,
    RenewalRefused,
    RenewalRequested,
)
from schemas.records import Prescription
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind, Tool, UnavailableReason
from services.journey import handlers
from services.journey.adapters.ledger import Base
from services.journey.domain import FAILED, JourneyEvent, Status, Step, Waiting
from services.journey.handlers import JOURNEY_GROUP, Sessions

VETERAN = "1012845331V153043"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/journey.db")
    await create_tables(engine, Base)
    await create_tables(engine, OutboxBase)
    yield session_factory(engine)
    await engine.dispose()


def requested(
    renewal_id: UUID | None = None, cohort: Cohort = Cohort.NEW, key: str | None = None
) -> RenewalRequested:
    """Meds' event for an accepted renewal, as the journey reads it from Kafka."""
    return RenewalRequested(
        renewal_id=renewal_id or uuid4(),
        cohort=cohort,
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="22045678"),
        source="http",
        idempotency_key=key,
    )


def refused(code: str = "refillable", key: str | None = None) -> RenewalRefused:
    return RenewalRefused(
        renewal_id=uuid4(),
        cohort=Cohort.BASE,
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        code=code,
        source="kafka",
        idempotency_key=key,
    )


def resolved(renewal_id: UUID) -> CareTeamsResolved:
    return CareTeamsResolved(
        renewal_id=renewal_id,
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId="22045678"),
        care_systems=[],
        suggested_team_id=None,
        picker=PickerKind.AUTO,
    )


def unavailable(renewal_id: UUID) -> CareTeamUnavailable:
    return CareTeamUnavailable(
        renewal_id=renewal_id,
        veteran_id=VETERAN,
        ehr=Ehr.VISTA,
        reason=UnavailableReason.ALL_BLOCKED,
    )


DRAFT: dict[str, Any] = {
    "veteran_id": VETERAN,
    "ehr": Ehr.VISTA,
    "category": Category.MEDICATIONS,
    "recipient_id": 1013155,
}


def drafted(renewal_id: UUID) -> DraftCreated:
    return DraftCreated(renewal_id=renewal_id, draft_id=uuid4(), **DRAFT)


def sent(renewal_id: UUID) -> MessageSent:
    return MessageSent(
        renewal_id=renewal_id,
        message_id="m-1",
        draft_id=uuid4(),
        veteran_id=VETERAN,
        recipient_id=1013155,
        station_number="442",
        ehr=Ehr.VISTA,
        category=Category.MEDICATIONS,
    )


async def journey_of(sessions: Sessions, renewal_id: UUID) -> handlers.Journey:
    found = await handlers.journey(sessions, renewal_id)
    assert found is not None
    return found


async def opened(sessions: Sessions, cohort: Cohort = Cohort.NEW) -> UUID:
    """A renewal the journey has read meds' request of."""
    event = requested(cohort=cohort)
    assert await handlers.record_step(event, sessions, TRACE) is not None
    return event.renewal_id


async def closures(sessions: Sessions) -> list[RenewalClosed]:
    """The ``renewal.closed`` events staged for meds, in order."""
    async with sessions() as session:
        rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        return [
            RenewalClosed.model_validate_json(row.value)
            for row in rows
            if row.topic == topics.RENEWALS_CLOSED
        ]


async def test_meds_request_opens_the_journey_with_what_meds_decided(sessions: Sessions) -> None:
    event = requested(cohort=Cohort.BASE, key="key-1")

    recorded = await handlers.record_step(event, sessions, TRACE)

    assert recorded is not None
    assert (recorded.status, recorded.record.step, recorded.record.tool) == (
        Status.REQUESTED,
        Step.REQUESTED,
        Tool.MEDS,
    )
    assert (recorded.ehr, recorded.cohort) == (Ehr.VISTA, Cohort.BASE)
    assert [s.step for s in recorded.counted] == [Step.REQUESTED]
    found = await journey_of(sessions, event.renewal_id)
    assert [(s.step, s.tool, s.event_id) for s in found.steps] == [
        ("requested", "meds", str(event.event_id))
    ]
    row = found.renewal
    assert (row.trace_id, row.cohort, row.source, row.requested_at) == (
        TRACE,
        "base",
        "http",
        event.occurred_at,
    )
    by_key = await handlers.journey_for_key(sessions, "key-1")
    assert by_key is not None and by_key.renewal.id == str(event.renewal_id)


async def test_a_refusal_by_meds_is_a_failed_journey_of_meds(sessions: Sessions) -> None:
    event = refused("renewal_flow_off", key="key-off")

    recorded = await handlers.record_step(event, sessions, TRACE)

    assert recorded is not None and recorded.status is Status.REFUSED
    found = await handlers.journey_for_key(sessions, "key-off")
    assert found is not None and found.state.failure is not None
    assert (found.state.failure.tool, found.state.failure.error_code) == (
        Tool.MEDS,
        "renewal_flow_off",
    )
    assert found.state.closed and found.renewal.source == "kafka"
    assert await closures(sessions) == [], "meds refused it itself: nothing to tell it"


async def test_the_ledger_records_each_event_once_in_any_order(sessions: Sessions) -> None:
    renewal_id = await opened(sessions)
    care_teams, draft = resolved(renewal_id), drafted(renewal_id)

    first = await handlers.record_step(draft, sessions)
    assert first is not None and first.status is Status.DRAFTED
    assert await handlers.record_step(care_teams, sessions) is not None
    assert await handlers.record_step(draft, sessions) is None
    assert await handlers.record_step(care_teams, sessions) is None

    found = await journey_of(sessions, renewal_id)
    assert found.state.status is Status.DRAFTED
    assert sorted(s.step for s in found.steps) == [
        "care_team_resolved",
        "draft_created",
        "requested",
    ]


async def test_steps_before_the_request_are_kept_and_count_when_it_arrives(
    sessions: Sessions,
) -> None:
    """The ledger reads its topics in no fixed order: SM's steps may come before meds' request. They
    are kept, and the request that opens the renewal counts them with it."""
    event = requested()
    renewal_id = event.renewal_id

    assert await handlers.record_step(resolved(renewal_id), sessions) is None
    assert await handlers.record_step(drafted(renewal_id), sessions) is None
    assert await handlers.journey(sessions, renewal_id) is None

    recorded = await handlers.record_step(event, sessions, TRACE)

    assert recorded is not None and recorded.status is Status.DRAFTED
    assert sorted(s.step for s in recorded.counted) == [
        Step.CARE_TEAM_RESOLVED,
        Step.DRAFT_CREATED,
        Step.REQUESTED,
    ]
    assert len((await journey_of(sessions, renewal_id)).steps) == 3


async def test_a_redelivered_event_is_in_the_inbox_and_has_no_second_effect(
    sessions: Sessions,
) -> None:
    renewal_id = await opened(sessions)
    draft = drafted(renewal_id)
    assert await handlers.record_step(draft, sessions) is not None
    before = await journey_of(sessions, renewal_id)

    assert await handlers.record_step(draft, sessions) is None

    after = await journey_of(sessions, renewal_id)
    assert [s.event_id for s in after.steps] == [s.event_id for s in before.steps]
    assert after.renewal.status_since == before.renewal.status_since
    async with sessions() as session:
        processed = await session.get(ProcessedEventRow, (JOURNEY_GROUP, str(draft.event_id)))
    assert processed is not None


async def test_a_step_counts_once_per_renewal_however_many_events_reach_it(
    sessions: Sessions,
) -> None:
    """Every edit of the draft is a step of the journey; the funnel counts the first."""
    renewal_id = await opened(sessions)
    edits = [
        DraftUpdated(renewal_id=renewal_id, draft_id=uuid4(), changed=["body"], **DRAFT)
        for _ in range(3)
    ]

    recorded = [await handlers.record_step(edit, sessions) for edit in edits]

    assert [len(r.counted) for r in recorded if r is not None] == [1, 0, 0]
    steps = (await journey_of(sessions, renewal_id)).steps
    assert [s.step for s in steps].count("draft_updated") == 3


async def test_a_batch_of_events_is_recorded_in_one_go_with_one_result_per_event(
    sessions: Sessions,
) -> None:
    """Events of several renewals, interleaved, a duplicate and a stranger among them: each result
    answers its own event, in the order given."""
    first = await opened(sessions)
    second = await opened(sessions)
    first_draft = drafted(first)
    batch: list[JourneyEvent] = [
        resolved(second),
        first_draft,
        resolved(first),
        first_draft,
        resolved(uuid4()),
    ]

    results = await handlers.record_steps(batch, sessions)

    assert [r.renewal_id if r else None for r in results] == [second, first, first, None, None]
    assert [r.record.step if r else None for r in results[:3]] == [
        Step.CARE_TEAM_RESOLVED,
        Step.DRAFT_CREATED,
        Step.CARE_TEAM_RESOLVED,
    ]
    assert (await journey_of(sessions, first)).state.status is Status.DRAFTED
    assert (await journey_of(sessions, second)).state.status is Status.CARE_TEAM_RESOLVED
    assert await handlers.record_steps(batch, sessions) == [None] * len(batch)


async def test_a_request_in_the_same_batch_as_its_steps_opens_the_renewal_with_its_trace(
    sessions: Sessions,
) -> None:
    event = requested()
    batch: list[JourneyEvent] = [drafted(event.renewal_id), event]

    results = await handlers.record_steps(batch, sessions, [None, TRACE])

    assert results[0] is None and results[1] is not None
    assert results[1].status is Status.DRAFTED
    assert (await journey_of(sessions, event.renewal_id)).renewal.trace_id == TRACE


async def test_a_failed_batch_records_none_of_its_events(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewal_id = await opened(sessions)
    record = handlers.LedgerBatch.record

    def failing_on_drafts(
        batch: handlers.LedgerBatch, session: Any, observed: Any, trace_id: Any
    ) -> Any:
        if observed.record.step is Step.DRAFT_CREATED:
            raise RuntimeError("database went away")
        return record(batch, session, observed, trace_id)

    monkeypatch.setattr(handlers.LedgerBatch, "record", failing_on_drafts)
    batch: list[JourneyEvent] = [resolved(renewal_id), drafted(renewal_id)]
    with pytest.raises(RuntimeError):
        await handlers.record_steps(batch, sessions)

    steps = (await journey_of(sessions, renewal_id)).steps
    assert [s.step for s in steps] == ["requested"]


async def test_a_closing_step_tells_meds_once_in_the_same_transaction(sessions: Sessions) -> None:
    renewal_id = await opened(sessions)
    await handlers.record_step(resolved(renewal_id), sessions)
    await handlers.record_step(drafted(renewal_id), sessions)
    assert await closures(sessions) == [], "a drafted renewal is open"

    recorded = await handlers.record_step(sent(renewal_id), sessions)
    deleted = DraftDeleted(renewal_id=renewal_id, draft_id=uuid4(), **DRAFT)
    await handlers.record_step(deleted, sessions)

    assert recorded is not None and recorded.closed
    [closed] = await closures(sessions)
    assert (closed.renewal_id, closed.status, closed.tool) == (renewal_id, "sent", Tool.JOURNEY)
    assert closed.cohort is Cohort.NEW


async def test_what_a_closing_step_stages_is_published_right_after_its_commit(
    sessions: Sessions,
) -> None:
    renewal_id = await opened(sessions)
    handed: list[dict[str, Any]] = []

    await handlers.record_step(drafted(renewal_id), sessions, publish=handed.extend)
    assert handed == [], "a drafted renewal is open: nothing for meds"
    await handlers.record_step(sent(renewal_id), sessions, publish=handed.extend)
    await handlers.record_step(unavailable(uuid4()), sessions, publish=handed.extend)

    closed = await closures(sessions)
    assert [record["event_id"] for record in handed] == [str(c.event_id) for c in closed]
    assert [c.status for c in closed] == ["sent", "care_team_unavailable"]


async def test_a_renewal_closed_before_its_request_is_read_is_told_to_meds_all_the_same(
    sessions: Sessions,
) -> None:
    """No care team, read before meds' request (or a renewal whose request is no longer on Kafka):
    meds must still hear it closed, or the prescription would be held open for good."""
    renewal_id = uuid4()
    assert await handlers.record_step(unavailable(renewal_id), sessions) is None
    [closed] = await closures(sessions)
    assert (closed.renewal_id, closed.status) == (renewal_id, "care_team_unavailable")


def letter(renewal_id: UUID, tool: Tool, service: str, group: str) -> DeadLetter:
    """A poison record on SM's care-teams topic, keyed by the renewal, refused by ``group``."""
    return DeadLetter(
        tool=tool,
        service=service,
        consumer_group=group,
        topic=topics.CARE_TEAMS,
        partition=0,
        offset=3,
        key=base64.b64encode(str(renewal_id).encode()).decode(),
        value="",
        error_type="ValidationError",
        reason="malformed JSON: the record is not a JSON document (or not UTF-8)",
        attempts=1,
    )


async def test_a_poison_record_on_an_sm_topic_is_one_sm_step_and_no_meds_one(
    sessions: Sessions,
) -> None:
    """SM's consumer and the journey ledger both refuse the record: the journey shows SM's refusal
    alone, with the topic's owner and the consumer that refused it."""
    renewal_id = await opened(sessions)
    await handlers.record_steps(
        [
            letter(renewal_id, Tool.SM, "messaging", "rxsm-messaging"),
            letter(renewal_id, Tool.JOURNEY, "journey", JOURNEY_GROUP),
        ],
        sessions,
    )

    steps = (await journey_of(sessions, renewal_id)).steps
    letters = [(s.tool, s.topic_owner, s.refused_by) for s in steps if s.step == "dead_lettered"]
    assert letters == [("sm", "sm", "rxsm-messaging")]


async def test_a_renewal_waiting_too_long_is_stalled_until_its_step_arrives(
    sessions: Sessions,
) -> None:
    renewal_id = await opened(sessions)
    timeout = timedelta(seconds=300)
    soon = datetime.now(UTC) + timedelta(seconds=60)
    later = datetime.now(UTC) + timedelta(seconds=301)

    assert await handlers.mark_stalled(sessions, soon, timeout) == []
    [stall] = await handlers.mark_stalled(sessions, later, timeout)
    assert (stall.renewal_id, stall.cohort) == (renewal_id, Cohort.NEW)
    assert stall.waiting == Waiting(Step.CARE_TEAM_RESOLVED, Tool.SM)
    assert await handlers.mark_stalled(sessions, later, timeout) == [], "marked once"
    found = await journey_of(sessions, renewal_id)
    assert (found.renewal.stalled_step, found.renewal.stalled_tool) == ("care_team_resolved", "sm")

    await handlers.record_step(resolved(renewal_id), sessions)
    found = await journey_of(sessions, renewal_id)
    assert found.renewal.stalled_at is None
    assert found.state.status is Status.CARE_TEAM_RESOLVED


async def test_the_stall_clock_starts_when_the_ledger_sees_a_step(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose event reached Kafka ten minutes late is not stalled on SM at once: SM's clock
    starts when the ledger read the event, not when the request was saved."""
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(handlers, "_now", lambda: clock[0])
    timeout = timedelta(seconds=300)
    event = requested()

    clock[0] += timedelta(minutes=10)
    await handlers.record_step(event, sessions)
    assert await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=60), timeout) == []
    [stall] = await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=301), timeout)
    assert (stall.renewal_id, stall.waiting.tool) == (event.renewal_id, Tool.SM)


async def test_failed_and_stalled_renewals_are_listed_most_recent_first(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC)
    clock = [start]
    monkeypatch.setattr(handlers, "_now", lambda: clock[0])

    async def one_minute_later() -> None:
        clock[0] += timedelta(minutes=1)

    refusal = refused("discontinued")
    await handlers.record_step(refusal, sessions)
    await one_minute_later()
    drafted_id = await opened(sessions)
    await handlers.record_step(drafted(drafted_id), sessions)
    await one_minute_later()
    stalled_id = await opened(sessions)
    await one_minute_later()
    unavailable_id = await opened(sessions)
    await handlers.record_step(unavailable(unavailable_id), sessions)
    [stall] = await handlers.mark_stalled(
        sessions, clock[0] + timedelta(minutes=10), timedelta(minutes=5)
    )
    assert stall.renewal_id == stalled_id

    failed_or_stalled = FAILED | {Status.STALLED}
    listed = await handlers.renewals(sessions, failed_or_stalled, None, 100)
    assert [UUID(j.renewal.id) for j in listed] == [
        stalled_id,
        unavailable_id,
        refusal.renewal_id,
    ]
    failure = listed[1].state.failure
    assert failure is not None
    assert (failure.tool, failure.step, failure.error_code) == (
        Tool.SM,
        Step.CARE_TEAM_UNAVAILABLE,
        "all_blocked",
    )

    recent = await handlers.renewals(sessions, FAILED, start + timedelta(seconds=30), 100)
    assert [UUID(j.renewal.id) for j in recent] == [unavailable_id]
    assert len(await handlers.renewals(sessions, frozenset(), None, 2)) == 2
    drafted_only = await handlers.renewals(sessions, frozenset({Status.DRAFTED}), None, 100)
    assert [UUID(j.renewal.id) for j in drafted_only] == [drafted_id]
