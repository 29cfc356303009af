"""Retention keeps every service table bounded: months of renewals, pruned daily on a simulated clock,
leave each table at what its retention age holds, on SQLite and on PostgreSQL, and /metrics counts
what was deleted.

The renewal and journey services are driven through their handlers as their entrypoints drive them
(the request, the relay publishing the outbox, the journey recording the events it reads, the intake
told that renewals closed), with the clocks of the handlers and of the outbox moved a day at a time.
"""

import contextlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from plumbing import migrations, outbox
from plumbing.database import session_factory
from plumbing.identity import ServiceIdentity
from plumbing.metrics import ServiceMetrics
from plumbing.outbox import OutboxRelay, OutboxRow, ProcessedEventRow
from plumbing.retention import Pruner, rules
from plumbing.settings import ServiceSettings
from schemas import topics
from schemas.events import CareTeamUnavailable, RenewalClosed, RenewalRefused, RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr, Tool, UnavailableReason
from services.journey import handlers as journey_handlers
from services.journey.adapters import ledger as journey_ledger
from services.journey.domain import JourneyEvent
from services.journey.entrypoints import JOURNEY_EVENT
from services.messaging.adapters.storage import DraftRow, SendRow, prune_closed
from services.messaging.domain import DraftState
from services.renewal import handlers
from services.renewal.adapters.ledger import RenewalRow, prune_finished

VETERAN = "1012845331V153043"
OUTBOX_DAYS, INBOX_DAYS, FINISHED_DAYS = 1, 31, 90
SETTINGS = ServiceSettings(
    retention_outbox_days=OUTBOX_DAYS,
    retention_inbox_days=INBOX_DAYS,
    retention_finished_days=FINISHED_DAYS,
)
START = datetime(2025, 1, 1, 9, tzinfo=UTC)


def test_the_inbox_keeps_ids_at_least_as_long_as_kafka_can_redeliver_them() -> None:
    longest = max(*topics.RETENTION_DAYS.values(), topics.RETRY_RETENTION_DAYS)
    assert longest == topics.RETENTION_DAYS[topics.DEAD_LETTER] == 30

    assert ServiceSettings().retention_inbox_days == longest + 1
    assert ServiceSettings(retention_inbox_days=longest).retention_inbox_days == longest
    with pytest.raises(ValidationError, match="retention_inbox_days"):
        ServiceSettings(retention_inbox_days=longest - 1)


def test_retention_defaults() -> None:
    defaults = ServiceSettings()

    assert (defaults.retention_outbox_days, defaults.retention_finished_days) == (1, 90)
    assert defaults.retention_sweep_seconds == 3600


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


class Kafka:
    """Acknowledges every publish, as the broker does."""

    async def publish(self, *_: Any, **__: Any) -> None:
        return None


@pytest.fixture
async def renewal(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The renewal service's database, migrated."""
    await migrations.upgrade(engine, "renewal")
    return session_factory(engine)


@pytest.fixture
async def journey(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The journey service's database, migrated."""
    await migrations.upgrade(engine, "journey")
    return session_factory(engine)


@pytest.fixture
async def messaging(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The messaging service's database, migrated."""
    await migrations.upgrade(engine, "messaging")
    return session_factory(engine)


async def counts(sessions: async_sessionmaker[AsyncSession], *tables: Any) -> dict[str, int]:
    async with sessions() as session:
        return {
            table.__tablename__: await session.scalar(select(func.count()).select_from(table)) or 0
            for table in tables
        }


def pruned_on_metrics(metrics: ServiceMetrics) -> dict[str, float]:
    """``rxsm_pruned_rows_total`` by table, as /metrics serves it."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.prometheus_text().decode()):
        for sample in family.samples:
            if sample.name == "rxsm_pruned_rows_total":
                found[sample.labels["table"]] = sample.value
    return found


class Allow:
    def is_on(self, flag: str, veteran_id: str) -> bool:
        return True

    def cohort(self, veteran_id: str) -> str:
        return "new"


def renewal_request(prescription_id: str, today: date, **changes: Any) -> RenewalRequest:
    return RenewalRequest.model_validate(
        {
            "veteranId": VETERAN,
            "prescription": {
                "prescriptionId": prescription_id,
                "dispStatus": "Active",
                "refillRemaining": 0,
                "expirationDate": (today + timedelta(days=60)).isoformat(),
                "isRefillable": False,
                "isRenewable": True,
                "prescriptionSource": "VA",
                "stationNumber": "442",
                **changes,
            },
            "facilities": [{"stationNumber": "442", "ehr": "vista"}],
        }
    )


async def request(
    sessions: async_sessionmaker[AsyncSession], body: RenewalRequest, today: date
) -> None:
    with contextlib.suppress(handlers.NotRenewable):  # a refused request is recorded too
        await handlers.request_renewal(
            body,
            sessions,
            Allow(),
            source="http",
            idempotency_key=str(uuid4()),
            trace_id=None,
            today=today,
        )


async def published(sessions: async_sessionmaker[AsyncSession]) -> list[JourneyEvent]:
    """What the relay publishes now (the requests and refusals), as the journey reads it."""
    relay = OutboxRelay(sessions, cast(KafkaBroker, Kafka()))
    async with sessions() as session:
        pending = await session.scalars(
            select(OutboxRow.value).where(OutboxRow.published_at.is_(None))
        )
        events = [JOURNEY_EVENT.validate_json(value) for value in pending]
    assert await relay.relay_once() == len(events)
    return events


RENEWALS_A_DAY = 2
"""Accepted each day, each of which finishes the same day (no care team); and one request refused."""
DAYS = 130


async def test_months_of_renewals_leave_each_intake_table_at_what_its_retention_keeps(
    renewal: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal service: each day's accepted requests close (the journey service says so) and one
    is refused; one accepted on day 0 never closes."""
    sessions = renewal
    clock = Clock(START)
    monkeypatch.setattr(handlers, "_now", clock)
    monkeypatch.setattr(outbox, "_now", clock)
    metrics = ServiceMetrics(ServiceIdentity("renewal", Tool.MEDS))
    pruner = Pruner(
        sessions, rules(SETTINGS, ("renewals",), prune_finished), metrics.pruned_rows, 3600, 2
    )
    await request(sessions, renewal_request("never-finishes", START.date()), START.date())
    await published(sessions)
    sizes = []
    for day in range(DAYS):
        clock.now = START + timedelta(days=day)
        today = clock.now.date()
        for n in range(RENEWALS_A_DAY):
            await request(sessions, renewal_request(f"rx-{day}-{n}", today), today)
        await request(
            sessions, renewal_request(f"rx-{day}", today, dispStatus="Discontinued"), today
        )
        for event in await published(sessions):
            if isinstance(event, RenewalRequested):
                closed = {"renewal_id": event.renewal_id, "status": "care_team_unavailable"}
                closing = RenewalClosed.model_validate(closed)
                assert await handlers.close_renewals([closing], sessions) == [True]
        clock.now += timedelta(hours=1)
        await pruner.prune(clock.now)
        sizes.append(await counts(sessions, RenewalRow, OutboxRow, ProcessedEventRow))

    # The last prune ran an hour after day DAYS - 1's requests: FINISHED_DAYS days of (2 closed + 1
    # refused) requests and the open one of day 0; the outbox: the last day's published events (a
    # refusal is published too); the intake keeps no inbox.
    steady = {
        "renewals": FINISHED_DAYS * (RENEWALS_A_DAY + 1) + 1,
        "outbox": OUTBOX_DAYS * (RENEWALS_A_DAY + 1),
        "processed_events": 0,
    }
    assert sizes[-1] == steady
    assert all(size == steady for size in sizes[FINISHED_DAYS - 1 :]), (
        "no table grows once its oldest rows reach their age"
    )
    made = {
        "renewals": DAYS * (RENEWALS_A_DAY + 1) + 1,
        "outbox": DAYS * (RENEWALS_A_DAY + 1) + 1,
        "processed_events": 0,
    }
    assert pruned_on_metrics(metrics) == {
        table: float(made[table] - steady[table]) for table in steady
    }
    async with sessions() as session:
        never = await session.scalars(
            select(RenewalRow.prescription_id).where(RenewalRow.open_key.is_not(None))
        )
        assert list(never) == ["never-finishes"], "an open request is never deleted"


async def test_months_of_journeys_leave_each_journey_table_at_what_its_retention_keeps(
    journey: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journey service: each day's requests end with no care team (the journey tells meds, by an
    event in its outbox) and one is refused; one requested on day 0 never finishes."""
    sessions = journey
    clock = Clock(START)
    monkeypatch.setattr(journey_handlers, "_now", clock)
    monkeypatch.setattr(outbox, "_now", clock)
    metrics = ServiceMetrics(ServiceIdentity("journey", Tool.JOURNEY))
    pruner = Pruner(
        sessions,
        rules(SETTINGS, ("journey_steps", "renewals"), journey_ledger.prune_finished),
        metrics.pruned_rows,
        3600,
        2,
    )

    def requested() -> RenewalRequested:
        return RenewalRequested(
            renewal_id=uuid4(),
            occurred_at=clock.now,
            veteran_id=VETERAN,
            ehr=Ehr.VISTA,
            prescription={"prescriptionId": "rx"},
            source="http",
        )

    await journey_handlers.record_steps([requested()], sessions)
    sizes = []
    for day in range(DAYS):
        clock.now = START + timedelta(days=day)
        accepted = [requested() for _ in range(RENEWALS_A_DAY)]
        refused = RenewalRefused(
            renewal_id=uuid4(),
            occurred_at=clock.now,
            veteran_id=VETERAN,
            ehr=Ehr.VISTA,
            code="discontinued",
            source="http",
        )
        unavailable = [
            CareTeamUnavailable(
                renewal_id=event.renewal_id,
                veteran_id=VETERAN,
                ehr=Ehr.VISTA,
                reason=UnavailableReason.NO_ASSOCIATIONS,
            )
            for event in accepted
        ]
        await journey_handlers.record_steps([*accepted, refused, *unavailable], sessions)
        await OutboxRelay(sessions, cast(KafkaBroker, Kafka())).relay_once()
        clock.now += timedelta(hours=1)
        await pruner.prune(clock.now)
        sizes.append(
            await counts(
                sessions,
                journey_ledger.RenewalRow,
                journey_ledger.StepRow,
                OutboxRow,
                ProcessedEventRow,
            )
        )

    # Finished journeys: FINISHED_DAYS days of (2 closed + 1 refused) renewals, with their steps (a
    # closed one: requested, no care team; a refused one: refused), and the open renewal of day 0
    # with its step. The outbox: the last day's ``renewal.closed`` events. The inbox: INBOX_DAYS
    # days of ids (5 events a day); the open renewal's, recorded on day 0, is long gone.
    events_a_day = 2 * RENEWALS_A_DAY + 1
    steady = {
        "renewals": FINISHED_DAYS * (RENEWALS_A_DAY + 1) + 1,
        "journey_steps": FINISHED_DAYS * events_a_day + 1,
        "outbox": OUTBOX_DAYS * RENEWALS_A_DAY,
        "processed_events": INBOX_DAYS * events_a_day,
    }
    assert sizes[-1] == steady
    assert all(size == steady for size in sizes[FINISHED_DAYS - 1 :]), (
        "no table grows once its oldest rows reach their age"
    )
    made = {
        "renewals": DAYS * (RENEWALS_A_DAY + 1) + 1,
        "journey_steps": DAYS * events_a_day + 1,
        "outbox": DAYS * RENEWALS_A_DAY,
        "processed_events": DAYS * events_a_day + 1,
    }
    assert pruned_on_metrics(metrics) == {
        table: float(made[table] - steady[table]) for table in steady
    }
    async with sessions() as session:
        never = await session.scalars(
            select(journey_ledger.RenewalRow.status).where(
                journey_ledger.RenewalRow.closed_at.is_(None)
            )
        )
        assert list(never) == ["requested"], "an open journey is never deleted"


async def test_nothing_is_deleted_before_its_age(renewal: async_sessionmaker[AsyncSession]) -> None:
    sessions = renewal
    metrics = ServiceMetrics(ServiceIdentity("renewal", Tool.MEDS))
    pruner = Pruner(
        sessions, rules(SETTINGS, ("renewals",), prune_finished), metrics.pruned_rows, every=3600
    )
    today = datetime.now(UTC).date()
    await request(sessions, renewal_request("rx", today, dispStatus="Discontinued"), today)
    async with sessions.begin() as session:
        outbox.stage(
            session,
            CareTeamUnavailable(
                renewal_id=uuid4(),
                veteran_id=VETERAN,
                ehr=Ehr.VISTA,
                reason=UnavailableReason.NO_ASSOCIATIONS,
            ),
        )
        outbox.mark_processed(session, "group", uuid4())
    await OutboxRelay(sessions, cast(KafkaBroker, Kafka())).relay_once()
    before = await counts(sessions, RenewalRow, OutboxRow, ProcessedEventRow)

    assert await pruner.prune(datetime.now(UTC) + timedelta(hours=23)) == dict.fromkeys(
        ["outbox", "processed_events", "renewals"], 0
    )
    assert await counts(sessions, RenewalRow, OutboxRow, ProcessedEventRow) == before
    assert pruned_on_metrics(metrics) == dict.fromkeys(before, 0.0), "every table at 0 from start"


def draft(state: DraftState, updated_at: datetime) -> DraftRow:
    return DraftRow(
        id=str(uuid4()),
        veteran_id=VETERAN,
        state=state.value,
        category="MEDICATIONS",
        subject="",
        body="",
        care_systems=[],
        cohort="new",
        created_at=updated_at,
        updated_at=updated_at,
    )


def send(draft_id: str) -> SendRow:
    return SendRow(
        draft_id=draft_id,
        veteran_id=VETERAN,
        state="sent",
        recipient_id=1,
        station_number="442",
        ehr="vista",
        category="MEDICATIONS",
        cohort="new",
    )


async def test_messaging_deletes_sent_and_deleted_drafts_with_their_sends_once_old(
    messaging: async_sessionmaker[AsyncSession],
) -> None:
    sessions = messaging
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=FINISHED_DAYS, seconds=1), now - timedelta(days=1)
    rows = {
        "old sent": draft(DraftState.SENT, old),
        "old deleted": draft(DraftState.DELETED, old),
        "old open": draft(DraftState.OPEN, old),
        "recent sent": draft(DraftState.SENT, recent),
    }
    async with sessions.begin() as session:
        session.add_all(rows.values())
        session.add_all([send(rows["old sent"].id), send(rows["recent sent"].id)])

    pruner = Pruner(
        sessions,
        rules(SETTINGS, ("message_sends", "message_drafts"), prune_closed),
        ServiceMetrics(ServiceIdentity("messaging", Tool.SM)).pruned_rows,
        every=3600,
    )
    pruned = await pruner.prune(now)

    assert (pruned["message_drafts"], pruned["message_sends"]) == (2, 1)
    async with sessions() as session:
        kept = set(await session.scalars(select(DraftRow.id)))
        sends = set(await session.scalars(select(SendRow.draft_id)))
    assert kept == {rows["old open"].id, rows["recent sent"].id}
    assert sends == {rows["recent sent"].id}
