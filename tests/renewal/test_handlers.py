"""The renewal intake's use cases on a real SQLite database and outbox; the relay and Kafka are left
out, so each test reads the staged events, and marks them published or closes a renewal as the relay
and the journey service would."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.flags import RENEWAL_FLOW, RENEWAL_FLOW_ORACLE_HEALTH, RENEWAL_FLOW_VISTA
from plumbing.outbox import OutboxBase, OutboxRow
from schemas import topics
from schemas.events import RenewalClosed, RenewalRefused, RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Cohort, Ehr, Tool
from services.renewal import handlers
from services.renewal.adapters.ledger import Base, RenewalRow
from services.renewal.domain import IntakeStatus, Refusal
from services.renewal.handlers import Sessions

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


async def refusals(sessions: Sessions) -> list[RenewalRefused]:
    """The ``renewal refused`` events in the outbox, for the journey service."""
    async with sessions() as session:
        rows = await session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        return [
            RenewalRefused.model_validate_json(row.value)
            for row in rows
            if row.topic == topics.RENEWAL_REFUSED
        ]


async def renewal_count(sessions: Sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(RenewalRow)) or 0


async def intake_of(sessions: Sessions, renewal_id: UUID) -> handlers.Request:
    found = await handlers.renewal(sessions, renewal_id)
    assert found is not None
    return found


async def published(sessions: Sessions, set_aside: str | None = None) -> None:
    """What the outbox relay does once Kafka acknowledged the staged events (or refused them for
    good: ``set_aside``)."""
    async with sessions.begin() as session:
        await session.execute(
            update(OutboxRow).values(published_at=datetime.now(UTC), refused_reason=set_aside)
        )


async def accepted_on_kafka(sessions: Sessions, body: RenewalRequest) -> UUID:
    """Accept a renewal and publish its event, as the relay does."""
    accepted = await request(sessions, body)
    await published(sessions)
    return accepted.renewal_id


def closed(renewal_id: UUID, status: str = "care_team_unavailable") -> RenewalClosed:
    """The journey service's word that the renewal closed."""
    return RenewalClosed.model_validate({"renewal_id": renewal_id, "status": status})


async def test_an_eligible_request_is_saved_with_its_event_staged(sessions: Sessions) -> None:
    accepted = await request(sessions, renewal_request())

    assert (accepted.status, accepted.cohort, accepted.duplicate) == (
        IntakeStatus.ACCEPTED,
        Cohort.NEW,
        False,
    )
    [event] = await staged(sessions)
    assert event.renewal_id == accepted.renewal_id
    assert (event.veteran_id, event.ehr, event.vista_stations) == (VETERAN, Ehr.VISTA, ["442"])
    assert (event.cohort, event.source, event.idempotency_key) == (Cohort.NEW, "http", None)
    found = await intake_of(sessions, accepted.renewal_id)
    assert found.status is IntakeStatus.ACCEPTED, "its event is not on Kafka yet"
    assert (found.renewal.trace_id, found.renewal.cohort) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "new",
    )


async def test_once_its_event_is_on_kafka_the_renewal_is_requested(sessions: Sessions) -> None:
    """From there the journey service says where it is."""
    accepted = await request(sessions, renewal_request(), "key-1")
    [event] = await staged(sessions)
    assert event.idempotency_key == "key-1"

    await published(sessions)

    found = await handlers.renewal_for_key(sessions, "key-1")
    assert found is not None and found.status is IntakeStatus.REQUESTED
    assert UUID(found.renewal.id) == accepted.renewal_id


async def test_an_event_kafka_can_never_take_fails_the_renewal(sessions: Sessions) -> None:
    accepted = await request(sessions, renewal_request())
    await published(sessions, set_aside="MessageSizeTooLargeError")
    assert (await intake_of(sessions, accepted.renewal_id)).status is IntakeStatus.FAILED


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
    first = await request(sessions, renewal_request())
    again = await request(sessions, renewal_request())
    assert (again.renewal_id, again.status) == (first.renewal_id, IntakeStatus.ACCEPTED)
    await published(sessions)
    again = await request(sessions, renewal_request())
    assert (again.renewal_id, again.status) == (first.renewal_id, IntakeStatus.REQUESTED)


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


async def test_once_the_journey_says_it_closed_the_prescription_may_be_renewed_again(
    sessions: Sessions,
) -> None:
    first = (await request(sessions, renewal_request(), "key-1")).renewal_id
    await published(sessions)
    assert (await request(sessions, renewal_request())).renewal_id == first, "open until told"

    assert await handlers.close_renewals([closed(first)], sessions) == [True]
    assert await handlers.close_renewals([closed(first)], sessions) == [True], "told again"

    second = await request(sessions, renewal_request())
    assert second.renewal_id != first
    assert len(await staged(sessions)) == 2
    again = await request(sessions, renewal_request(), "key-1")
    assert (again.renewal_id, again.status) == (first, IntakeStatus.CARE_TEAM_UNAVAILABLE)
    assert await handlers.close_renewals([closed(uuid4())], sessions) == [False], "not ours"


async def test_closings_read_together_close_each_renewal_once_and_keep_a_status_s_time(
    sessions: Sessions,
) -> None:
    first = (await request(sessions, renewal_request("1"))).renewal_id
    second = (await request(sessions, renewal_request("2"))).renewal_id

    answers = await handlers.close_renewals(
        [closed(first, "sent"), closed(uuid4()), closed(second, "draft_deleted")], sessions
    )
    assert answers == [True, False, True]
    since = await status_since(sessions, first)
    assert await handlers.close_renewals([closed(first, "sent")], sessions) == [True]

    assert await status_since(sessions, first) == since, "the same status: its time is kept"
    async with sessions() as session:
        rows = {row.id: row for row in await session.scalars(select(RenewalRow))}
    assert (rows[str(first)].status, rows[str(second)].status) == ("sent", "draft_deleted")
    assert rows[str(first)].open_key is None and rows[str(second)].open_key is None


async def status_since(sessions: Sessions, renewal_id: UUID) -> datetime:
    async with sessions() as session:
        row = await session.get(RenewalRow, str(renewal_id))
        assert row is not None
        return row.status_since


async def test_a_key_reused_for_another_prescription_is_refused(sessions: Sessions) -> None:
    await request(sessions, renewal_request("1"), "key-1")
    with pytest.raises(handlers.IdempotencyKeyReused):
        await request(sessions, renewal_request("2"), "key-1")


async def test_a_refusal_is_saved_and_published_for_the_journey_not_for_sm(
    sessions: Sessions,
) -> None:
    body = renewal_request(refillRemaining=2, isRefillable=True)
    with pytest.raises(handlers.NotRenewable) as refused:
        await request(sessions, body, "key-r")
    assert (refused.value.refusal, refused.value.duplicate) == (Refusal.REFILLABLE, False)
    assert refused.value.cohort is Cohort.NEW
    assert await staged(sessions) == [], "nothing goes to SM"
    [event] = await refusals(sessions)
    assert (event.renewal_id, event.code, event.tool) == (
        refused.value.renewal_id,
        "refillable",
        Tool.MEDS,
    )
    assert (event.ehr, event.cohort, event.source, event.idempotency_key) == (
        Ehr.VISTA,
        Cohort.NEW,
        "http",
        "key-r",
    )
    assert "prescription" not in RenewalRefused.model_fields, "the refusal carries its code only"

    found = await handlers.renewal_for_key(sessions, "key-r")
    assert found is not None
    assert UUID(found.renewal.id) == refused.value.renewal_id
    assert (found.status, found.renewal.refusal) == (IntakeStatus.REFUSED, "refillable")

    with pytest.raises(handlers.NotRenewable) as again:
        await request(sessions, body, "key-r")
    assert (again.value.renewal_id, again.value.duplicate) == (refused.value.renewal_id, True)
    assert len(await refusals(sessions)) == 1, "a repeat publishes nothing new"


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
    assert [e.code for e in await refusals(sessions)] == ["renewal_flow_off"]
    found = await handlers.renewal_for_key(sessions, "key-off")
    assert found is not None
    assert (found.status, found.renewal.refusal) == (IntakeStatus.REFUSED, "renewal_flow_off")
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
    found = await handlers.renewal_for_key(sessions, "key-ehr")
    assert found is not None
    assert found.renewal.refusal == "renewal_flow_off_for_ehr"


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


async def test_an_accepted_renewal_whose_event_is_not_on_kafka_stalls_on_meds(
    sessions: Sessions,
) -> None:
    """Its event waits in the outbox (Kafka refuses every publish): after the timeout it is stalled
    on meds, once; once the event is on Kafka the renewal is requested and the stall is over."""
    accepted = await request(sessions, renewal_request())
    on_kafka = await accepted_on_kafka(sessions, renewal_request("on-kafka"))
    waiting = await request(sessions, renewal_request("another"))
    timeout = timedelta(seconds=300)
    soon = datetime.now(UTC) + timedelta(seconds=60)
    later = datetime.now(UTC) + timedelta(seconds=301)
    async with sessions.begin() as session:  # only the first two were staged before "publishing"
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.key != str(on_kafka).encode())
            .values(published_at=None)
        )

    assert await handlers.mark_stalled(sessions, soon, timeout) == []
    stalls = await handlers.mark_stalled(sessions, later, timeout)
    assert sorted(str(s.renewal_id) for s in stalls) == sorted(
        str(r) for r in (accepted.renewal_id, waiting.renewal_id)
    )
    assert await handlers.mark_stalled(sessions, later, timeout) == [], "found once"
    found = await intake_of(sessions, accepted.renewal_id)
    assert found.status is IntakeStatus.STALLED
    assert (found.renewal.stalled_step, found.renewal.stalled_tool) == ("requested", "meds")

    await published(sessions)
    assert (await intake_of(sessions, accepted.renewal_id)).status is IntakeStatus.REQUESTED
    assert (await intake_of(sessions, on_kafka)).status is IntakeStatus.REQUESTED
