"""The renewal use cases on a real SQLite ledger and outbox; the relay and Kafka are left out, so each
test reads the staged events and hands them back to the ledger itself."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.flags import RENEWAL_FLOW, RENEWAL_FLOW_ORACLE_HEALTH, RENEWAL_FLOW_VISTA
from plumbing.outbox import OutboxBase, OutboxRow, ProcessedEventRow
from schemas import topics
from schemas.events import (
    CareTeamsResolved,
    CareTeamUnavailable,
    DraftCreated,
    DraftUpdated,
    RenewalRequested,
)
from schemas.records import Prescription, RenewalRequest
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind, Tool, UnavailableReason
from services.renewal import handlers
from services.renewal.adapters.ledger import Base, RenewalRow
from services.renewal.domain import FAILED, LedgerEvent, Refusal, Status, Step, Waiting
from services.renewal.handlers import LEDGER_GROUP, Sessions

TODAY = date.today()
VETERAN = "1012845331V153043"


@dataclass
class Flags:
    """The rollout as a test sets it; counts how often the renewal flow was evaluated."""

    renewal_flow: bool = True
    veterans_cohort: Cohort = Cohort.NEW
    evaluations: int = 0
    open_ehrs: set[str] = field(default_factory=lambda: {"vista", "oracle_health"})
    asked: list[str] = field(default_factory=list)

    def is_on(self, flag: str, veteran_id: str) -> bool:
        self.asked.append(flag)
        if flag == RENEWAL_FLOW_VISTA:
            return "vista" in self.open_ehrs
        if flag == RENEWAL_FLOW_ORACLE_HEALTH:
            return "oracle_health" in self.open_ehrs
        assert flag == RENEWAL_FLOW
        self.evaluations += 1
        return self.renewal_flow

    def cohort(self, veteran_id: str) -> str:
        return self.veterans_cohort.value


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/renewal.db")
    await create_tables(engine, Base)
    await create_tables(engine, OutboxBase)
    yield session_factory(engine)
    await engine.dispose()


def renewal_request(prescription_id: str = "22045678", **changes: Any) -> RenewalRequest:
    prescription = {
        "prescriptionId": prescription_id,
        "dispStatus": "Active",
        "refillRemaining": 0,
        "expirationDate": (TODAY + timedelta(days=60)).isoformat(),
        "isRefillable": False,
        "isRenewable": True,
        "prescriptionSource": "VA",
        "stationNumber": "442",
        **changes,
    }
    return RenewalRequest.model_validate(
        {
            "veteranId": VETERAN,
            "prescription": prescription,
            "facilities": [{"stationNumber": "442", "ehr": "vista"}],
        }
    )


async def request(
    sessions: Sessions,
    body: RenewalRequest,
    key: str | None = None,
    flags: Flags | None = None,
) -> handlers.Accepted:
    return await handlers.request_renewal(
        body,
        sessions,
        flags or Flags(),
        source="http",
        idempotency_key=key,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        today=TODAY,
    )


async def staged(sessions: Sessions) -> list[RenewalRequested]:
    """The ``renewal requested`` events in the outbox, in the order the relay publishes them."""
    async with sessions() as session:
        rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        return [
            RenewalRequested.model_validate_json(row.value)
            for row in rows
            if row.topic == topics.RENEWAL_REQUESTED
        ]


async def renewal_count(sessions: Sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(RenewalRow)) or 0


async def journey_of(sessions: Sessions, renewal_id: UUID) -> handlers.Journey:
    found = await handlers.journey(sessions, renewal_id)
    assert found is not None
    return found


async def accepted_on_kafka(sessions: Sessions, body: RenewalRequest) -> UUID:
    """Accept a renewal and let the ledger read its event back, as it does once Kafka has it."""
    accepted = await request(sessions, body)
    [event] = [e for e in await staged(sessions) if e.renewal_id == accepted.renewal_id]
    await handlers.record_step(event, sessions)
    return accepted.renewal_id


async def test_an_eligible_request_is_saved_with_its_event_staged(sessions: Sessions) -> None:
    accepted = await request(sessions, renewal_request())

    assert (accepted.status, accepted.cohort, accepted.duplicate) == (
        Status.ACCEPTED,
        Cohort.NEW,
        False,
    )
    [event] = await staged(sessions)
    assert event.renewal_id == accepted.renewal_id
    assert (event.veteran_id, event.ehr, event.vista_stations) == (VETERAN, Ehr.VISTA, ["442"])
    assert event.cohort is Cohort.NEW
    found = await journey_of(sessions, accepted.renewal_id)
    assert found.state.status is Status.ACCEPTED, "not on Kafka until the ledger reads it back"
    assert found.steps == []
    assert (found.renewal.trace_id, found.renewal.cohort) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "new",
    )


async def test_the_ledger_sees_the_renewal_requested_when_its_event_comes_back(
    sessions: Sessions,
) -> None:
    accepted = await request(sessions, renewal_request(), flags=Flags(veterans_cohort=Cohort.BASE))
    [event] = await staged(sessions)

    recorded = await handlers.record_step(event, sessions)

    assert recorded is not None
    assert (recorded.status, recorded.record.step, recorded.record.tool) == (
        Status.REQUESTED,
        Step.REQUESTED,
        Tool.MEDS,
    )
    assert (recorded.ehr, recorded.cohort, recorded.first_of_step) == (
        Ehr.VISTA,
        Cohort.BASE,
        True,
    )
    found = await journey_of(sessions, accepted.renewal_id)
    assert [(s.step, s.tool, s.event_id) for s in found.steps] == [
        ("requested", "meds", str(event.event_id))
    ]


@pytest.mark.parametrize(
    ("first_key", "second_key"),
    [("key-1", "key-1"), (None, None), ("key-1", None), ("key-1", "key-2")],
    ids=["same key", "no key, renewal open", "key then none", "another key, renewal open"],
)
async def test_a_repeated_request_returns_the_same_renewal_and_stages_nothing_new(
    sessions: Sessions, first_key: str | None, second_key: str | None
) -> None:
    first = await request(sessions, renewal_request(), first_key)
    second = await request(sessions, renewal_request(), second_key)
    assert second.renewal_id == first.renewal_id
    assert (first.duplicate, second.duplicate) == (False, True)
    assert len(await staged(sessions)) == 1


async def test_a_repeat_answers_where_the_renewal_is(sessions: Sessions) -> None:
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
    again = await request(sessions, renewal_request())
    assert (again.renewal_id, again.status) == (renewal_id, Status.REQUESTED)


async def test_identical_requests_at_the_same_moment_make_one_renewal_and_one_event(
    sessions: Sessions,
) -> None:
    """The losers' transactions fail on the unique key and take their staged events with them."""
    results = await asyncio.gather(
        *(request(sessions, renewal_request(), "same") for _ in range(5))
    )
    assert len({accepted.renewal_id for accepted in results}) == 1
    assert [e.renewal_id for e in await staged(sessions)] == [results[0].renewal_id]


@pytest.mark.parametrize("failing_table", ["renewals", "outbox"])
async def test_a_failed_transaction_saves_neither_the_renewal_nor_its_event(
    sessions: Sessions, failing_table: str
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {failing_table} "
                "BEGIN SELECT RAISE(ABORT, 'the database refused the row'); END"
            )
        )

    with pytest.raises(IntegrityError):
        await request(sessions, renewal_request())

    assert await staged(sessions) == []
    assert await renewal_count(sessions) == 0


async def test_once_closed_the_same_prescription_may_be_renewed_again(sessions: Sessions) -> None:
    first = await accepted_on_kafka(sessions, renewal_request())
    await handlers.record_step(
        CareTeamUnavailable(
            renewal_id=first,
            veteran_id=VETERAN,
            ehr=Ehr.VISTA,
            reason=UnavailableReason.NO_ASSOCIATIONS,
        ),
        sessions,
    )
    second = await request(sessions, renewal_request())
    assert second.renewal_id != first
    assert len(await staged(sessions)) == 2


async def test_a_key_reused_for_another_prescription_is_refused(sessions: Sessions) -> None:
    await request(sessions, renewal_request("1"), "key-1")
    with pytest.raises(handlers.IdempotencyKeyReused):
        await request(sessions, renewal_request("2"), "key-1")


async def test_a_refusal_is_recorded_and_stages_nothing(sessions: Sessions) -> None:
    body = renewal_request(refillRemaining=2, isRefillable=True)
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, body, "key-r")
    assert (refused.value.refusal, refused.value.duplicate) == (Refusal.REFILLABLE, False)
    assert refused.value.cohort is Cohort.NEW
    assert await staged(sessions) == []

    found = await handlers.journey_for_key(sessions, "key-r")
    assert found is not None
    assert UUID(found.renewal.id) == refused.value.renewal_id
    assert found.state.status is Status.REFUSED
    assert found.state.failure is not None
    assert (found.state.failure.tool, found.state.failure.error_code) == (Tool.MEDS, "refillable")

    with pytest.raises(handlers.NotRenewable) as again:
        await request(sessions, body, "key-r")
    assert (again.value.renewal_id, again.value.duplicate) == (refused.value.renewal_id, True)


@pytest.mark.parametrize(
    "changes",
    [{}, {"dispStatus": "Discontinued"}],
    ids=["renewable", "not renewable either"],
)
async def test_with_the_renewal_flow_off_a_request_is_refused_and_recorded(
    sessions: Sessions, changes: dict[str, Any]
) -> None:
    off = Flags(renewal_flow=False, veterans_cohort=Cohort.BASE)
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, renewal_request(**changes), "key-off", flags=off)

    assert refused.value.refusal is Refusal.RENEWAL_FLOW_OFF
    assert not refused.value.upstream_disagrees
    assert await staged(sessions) == []
    found = await handlers.journey_for_key(sessions, "key-off")
    assert found is not None
    assert found.state.status is Status.REFUSED
    assert found.state.failure is not None
    assert (found.state.failure.tool, found.state.failure.error_code) == (
        Tool.MEDS,
        "renewal_flow_off",
    )
    assert found.renewal.cohort == "base"


async def test_the_flag_is_evaluated_once_when_the_renewal_is_accepted(sessions: Sessions) -> None:
    """Turned off afterwards, the flag refuses new renewals only: the accepted one is answered by
    its repeats and its event stays staged."""
    flags = Flags()
    accepted = await request(sessions, renewal_request(), "key-1", flags=flags)
    flags.renewal_flow = False

    for key in ("key-1", None):
        repeat = await request(sessions, renewal_request(), key, flags=flags)
        assert (repeat.renewal_id, repeat.duplicate) == (accepted.renewal_id, True)
    assert flags.evaluations == 1
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, renewal_request("another"), flags=flags)
    assert refused.value.refusal is Refusal.RENEWAL_FLOW_OFF
    assert [e.renewal_id for e in await staged(sessions)] == [accepted.renewal_id]


def oracle_health_request(prescription_id: str = "15214213790", **changes: Any) -> RenewalRequest:
    """An Oracle Health prescription VA marks renewable (vets-api's /my_health/v2 record)."""
    return RenewalRequest.model_validate(
        {
            "veteranId": VETERAN,
            "prescription": {
                "prescriptionId": prescription_id,
                "dispStatus": "Active",
                "refillRemaining": 0,
                "isRefillable": False,
                "isRenewable": True,
                "prescriptionSource": "VA",
                "stationNumber": "668",
                **changes,
            },
            "facilities": [{"stationNumber": "668", "ehr": "oracle_health"}],
        }
    )


@pytest.mark.parametrize(
    ("open_ehrs", "body", "refusal"),
    [
        ({"oracle_health"}, renewal_request(), Refusal.RENEWAL_FLOW_OFF_FOR_EHR),
        ({"oracle_health"}, oracle_health_request(), None),
        ({"vista"}, oracle_health_request(), Refusal.RENEWAL_FLOW_OFF_FOR_EHR),
        ({"vista"}, renewal_request(), None),
        (set(), renewal_request(dispStatus="Discontinued"), Refusal.RENEWAL_FLOW_OFF_FOR_EHR),
    ],
    ids=[
        "VistA closed",
        "Oracle Health open",
        "Oracle Health closed",
        "VistA open",
        "closed, whatever the prescription",
    ],
)
async def test_the_flow_opens_only_for_the_ehrs_whose_flag_is_on(
    sessions: Sessions, open_ehrs: set[str], body: RenewalRequest, refusal: Refusal | None
) -> None:
    flags = Flags(open_ehrs=open_ehrs)
    if refusal is None:
        accepted = await request(sessions, body, "key-ehr", flags=flags)
        assert [e.renewal_id for e in await staged(sessions)] == [accepted.renewal_id]
        return
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, body, "key-ehr", flags=flags)
    assert refused.value.refusal is refusal
    assert not refused.value.upstream_disagrees
    assert await staged(sessions) == []
    found = await handlers.journey_for_key(sessions, "key-ehr")
    assert found is not None and found.state.failure is not None
    assert found.state.failure.error_code == "renewal_flow_off_for_ehr"


async def test_the_renewal_flow_off_outranks_a_closed_ehr(sessions: Sessions) -> None:
    flags = Flags(renewal_flow=False, open_ehrs=set())
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, renewal_request(), flags=flags)
    assert refused.value.refusal is Refusal.RENEWAL_FLOW_OFF


async def test_each_ehr_asks_its_own_flag(sessions: Sessions) -> None:
    vista, oracle_health = Flags(), Flags()
    await request(sessions, renewal_request("1"), flags=vista)
    await request(sessions, oracle_health_request("2"), flags=oracle_health)
    assert RENEWAL_FLOW_VISTA in vista.asked and RENEWAL_FLOW_ORACLE_HEALTH not in vista.asked
    assert RENEWAL_FLOW_ORACLE_HEALTH in oracle_health.asked
    assert RENEWAL_FLOW_VISTA not in oracle_health.asked


async def test_a_disagreeing_upstream_flag_is_reported_on_an_accepted_renewal(
    sessions: Sessions,
) -> None:
    """VistA: VA's rule (Active, 0 refills, isRefillable false) decides, isRenewable false is only
    reported; Oracle Health: isRenewable decides, the FHIR-level gates (here: refills left, not
    expired) are only reported."""
    vista = await request(sessions, renewal_request("1", isRenewable=False))
    fhir = {
        "medicationRequestStatus": "active",
        "medicationCategory": "va_prescription",
        "dispenseCount": 1,
        "completedDispenseCount": 1,
        "numberOfRepeatsAllowed": 3,
        "expirationDate": (TODAY + timedelta(days=30)).isoformat(),
    }
    oracle_health = await request(sessions, oracle_health_request("2", **fhir))
    agreeing = await request(sessions, renewal_request("3"))
    assert (vista.upstream_disagrees, oracle_health.upstream_disagrees) == (True, True)
    assert not agreeing.upstream_disagrees
    assert len(await staged(sessions)) == 3


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


DRAFT: dict[str, Any] = {
    "veteran_id": VETERAN,
    "ehr": Ehr.VISTA,
    "category": Category.MEDICATIONS,
    "recipient_id": 1013155,
}


def drafted(renewal_id: UUID) -> DraftCreated:
    return DraftCreated(renewal_id=renewal_id, draft_id=uuid4(), **DRAFT)


async def test_the_ledger_records_each_event_once_in_any_order(sessions: Sessions) -> None:
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
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


async def test_a_redelivered_event_is_in_the_inbox_and_has_no_second_effect(
    sessions: Sessions,
) -> None:
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
    draft = drafted(renewal_id)
    assert await handlers.record_step(draft, sessions) is not None
    before = await journey_of(sessions, renewal_id)

    assert await handlers.record_step(draft, sessions) is None

    after = await journey_of(sessions, renewal_id)
    assert [s.event_id for s in after.steps] == [s.event_id for s in before.steps]
    assert after.renewal.status_since == before.renewal.status_since
    async with sessions() as session:
        processed = await session.get(ProcessedEventRow, (LEDGER_GROUP, str(draft.event_id)))
    assert processed is not None


async def test_a_step_counts_once_per_renewal_however_many_events_reach_it(
    sessions: Sessions,
) -> None:
    """Every edit of the draft is a step of the journey; the funnel counts the first."""
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
    edits = [
        DraftUpdated(renewal_id=renewal_id, draft_id=uuid4(), changed=["body"], **DRAFT)
        for _ in range(3)
    ]

    recorded = [await handlers.record_step(edit, sessions) for edit in edits]

    assert [r.first_of_step for r in recorded if r is not None] == [True, False, False]
    steps = (await journey_of(sessions, renewal_id)).steps
    assert [s.step for s in steps].count("draft_updated") == 3


async def test_a_batch_of_events_is_recorded_in_one_go_with_one_result_per_event(
    sessions: Sessions,
) -> None:
    """Events of several renewals, interleaved, a duplicate and a stranger among them: each result
    answers its own event, in the order given."""
    first = await accepted_on_kafka(sessions, renewal_request("1001"))
    second = await accepted_on_kafka(sessions, renewal_request("1002"))
    first_draft = drafted(first)
    batch: list[LedgerEvent] = [
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


async def test_a_failed_batch_records_none_of_its_events(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
    record = handlers.LedgerBatch.record

    def failing_on_drafts(batch: handlers.LedgerBatch, session: Any, observed: Any) -> Any:
        if observed.record.step is Step.DRAFT_CREATED:
            raise RuntimeError("database went away")
        return record(batch, session, observed)

    monkeypatch.setattr(handlers.LedgerBatch, "record", failing_on_drafts)
    batch: list[LedgerEvent] = [resolved(renewal_id), drafted(renewal_id)]
    with pytest.raises(RuntimeError):
        await handlers.record_steps(batch, sessions)

    steps = (await journey_of(sessions, renewal_id)).steps
    assert [s.step for s in steps] == ["requested"]


async def test_events_of_unknown_renewals_are_ignored(sessions: Sessions) -> None:
    assert await handlers.record_step(resolved(uuid4()), sessions) is None


async def test_a_renewal_waiting_too_long_is_stalled_until_its_step_arrives(
    sessions: Sessions,
) -> None:
    renewal_id = await accepted_on_kafka(sessions, renewal_request())
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


async def test_a_renewal_whose_event_is_not_on_kafka_stalls_on_meds(sessions: Sessions) -> None:
    await request(sessions, renewal_request())
    later = datetime.now(UTC) + timedelta(seconds=301)
    [stall] = await handlers.mark_stalled(sessions, later, timedelta(seconds=300))
    assert stall.waiting == Waiting(Step.REQUESTED, Tool.MEDS)


async def test_the_stall_clock_starts_when_the_ledger_sees_a_step(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal whose event reached Kafka ten minutes late is not stalled on SM at once: SM's clock
    starts when the ledger read the event, not when the request was saved."""
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(handlers, "_now", lambda: clock[0])
    timeout = timedelta(seconds=300)
    accepted = await request(sessions, renewal_request())
    [event] = await staged(sessions)

    clock[0] += timedelta(minutes=10)
    await handlers.record_step(event, sessions)
    assert await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=60), timeout) == []
    [stall] = await handlers.mark_stalled(sessions, clock[0] + timedelta(seconds=301), timeout)
    assert (stall.renewal_id, stall.waiting.tool) == (accepted.renewal_id, Tool.SM)


async def test_failed_and_stalled_renewals_are_listed_most_recent_first(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime.now(UTC)
    clock = [start]
    monkeypatch.setattr(handlers, "_now", lambda: clock[0])

    async def one_minute_later() -> None:
        clock[0] += timedelta(minutes=1)

    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, renewal_request("refused", dispStatus="Discontinued"))
    await one_minute_later()
    drafted_id = await accepted_on_kafka(sessions, renewal_request("drafted"))
    await handlers.record_step(drafted(drafted_id), sessions)
    await one_minute_later()
    stalled_id = await accepted_on_kafka(sessions, renewal_request("stalled"))
    await one_minute_later()
    unavailable_id = await accepted_on_kafka(sessions, renewal_request("unavailable"))
    await handlers.record_step(
        CareTeamUnavailable(
            renewal_id=unavailable_id,
            veteran_id=VETERAN,
            ehr=Ehr.VISTA,
            reason=UnavailableReason.ALL_BLOCKED,
        ),
        sessions,
    )
    [stall] = await handlers.mark_stalled(
        sessions, clock[0] + timedelta(minutes=10), timedelta(minutes=5)
    )
    assert stall.renewal_id == stalled_id

    failed_or_stalled = FAILED | {Status.STALLED}
    listed = await handlers.renewals(sessions, failed_or_stalled, None, 100)
    assert [UUID(j.renewal.id) for j in listed] == [
        stalled_id,
        unavailable_id,
        refused.value.renewal_id,
    ]
    unavailable = listed[1].state.failure
    assert unavailable is not None
    assert (unavailable.tool, unavailable.step, unavailable.error_code) == (
        Tool.SM,
        Step.CARE_TEAM_UNAVAILABLE,
        "all_blocked",
    )

    recent = await handlers.renewals(sessions, FAILED, start + timedelta(seconds=30), 100)
    assert [UUID(j.renewal.id) for j in recent] == [unavailable_id]
    assert len(await handlers.renewals(sessions, frozenset(), None, 2)) == 2
    drafted_only = await handlers.renewals(sessions, frozenset({Status.DRAFTED}), None, 100)
    assert [UUID(j.renewal.id) for j in drafted_only] == [drafted_id]
