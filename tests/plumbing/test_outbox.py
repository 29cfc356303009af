"""The outbox publishes exactly what was committed, in order, on the real broker; the inbox dedups."""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.broker import make_broker
from plumbing.database import create_tables, in_transaction, make_engine, session_factory
from plumbing.identity import ServiceIdentity
from plumbing.metrics import SetAsideGauge
from plumbing.outbox import (
    OutboxBase,
    OutboxRelay,
    OutboxRow,
    SetAside,
    first_time,
    processed,
    record_processed,
    set_aside,
    stage,
)
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from schemas import topics
from schemas.events import CareTeamUnavailable
from schemas.vocabulary import Tool
from tests.support import read_topic

IDENTITY = ServiceIdentity("outbox-test", Tool.SM)
pytestmark = pytest.mark.kafka


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await create_tables(engine, OutboxBase)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    spans = InMemorySpanExporter()
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_bootstrap)
    broker = make_broker(IDENTITY, settings, tracer_provider(IDENTITY, exporter=spans))
    await broker.start()
    yield broker
    await broker.stop()


def unavailable(renewal_id: object) -> CareTeamUnavailable:
    return CareTeamUnavailable(
        renewal_id=renewal_id, veteran_id="v-1", ehr="vista", reason="no_associations"
    )


async def test_committed_events_are_published_once_in_order(
    sessions: async_sessionmaker[AsyncSession], broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    renewal_id = uuid4()
    events = [unavailable(renewal_id) for _ in range(5)]
    async with sessions.begin() as session:
        for event in events:
            stage(session, event)
    relay = OutboxRelay(sessions, broker)

    assert await relay.relay_once() == 5
    assert await relay.relay_once() == 0

    found = await read_topic(
        kafka_bootstrap, topics.CARE_TEAMS, lambda e: e.get("renewal_id") == str(renewal_id), 5
    )
    assert [e["event_id"] for e in found] == [str(e.event_id) for e in events]


async def test_a_rolled_back_transaction_publishes_nothing(
    sessions: async_sessionmaker[AsyncSession], broker: KafkaBroker
) -> None:
    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            stage(session, unavailable(uuid4()))
            raise RuntimeError("the effect failed")
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 0
    assert await OutboxRelay(sessions, broker).relay_once() == 0


async def test_the_inbox_lets_an_event_through_once_per_consumer_group(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event_id = uuid4()
    async with sessions.begin() as session:
        assert await first_time(session, "rxsm-messaging", event_id)
    async with sessions.begin() as session:
        assert not await first_time(session, "rxsm-messaging", event_id)
        assert await first_time(session, "rxsm-renewal-ledger", event_id)


async def test_a_batch_finds_which_of_its_events_its_group_processed_in_one_query(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    engine = sessions.kw["bind"]
    done, fresh = str(uuid4()), str(uuid4())
    await in_transaction(engine, lambda sync: record_processed(sync, "rxsm-messaging", [done]))

    found = await in_transaction(
        engine, lambda sync: processed(sync, "rxsm-messaging", [done, fresh])
    )
    elsewhere = await in_transaction(
        engine, lambda sync: processed(sync, "rxsm-journey", [done, fresh])
    )

    assert found == {done}
    assert elsewhere == set()


def oversized_row(key: bytes) -> OutboxRow:
    """An event over 1 MB, as staged before rxsm refused them at staging (or as a broker with a
    smaller limit than the producer's would refuse it)."""
    return OutboxRow(
        event_id=str(uuid4()),
        topic=topics.CARE_TEAMS,
        key=key,
        value=b'{"pad": "' + b"x" * 2_000_000 + b'"}',
        headers={"rxsm-event-type": "careteams.unavailable"},
        created_at=datetime.now(UTC),
        published_at=None,
    )


async def test_an_event_kafka_can_never_take_is_set_aside_and_does_not_block_the_rest(
    sessions: async_sessionmaker[AsyncSession], broker: KafkaBroker, kafka_bootstrap: str
) -> None:
    renewal_id = uuid4()
    async with sessions.begin() as session:
        stage(session, unavailable(renewal_id))
        session.add(oversized_row(b"too-large"))
        stage(session, unavailable(renewal_id))
    told: list[list[SetAside]] = []

    async def on_set_aside(session: AsyncSession, rows: Sequence[SetAside]) -> None:
        told.append(list(rows))

    gauge = SetAsideGauge()
    relay = OutboxRelay(sessions, broker, on_set_aside=on_set_aside, set_aside_gauge=gauge)

    assert await relay.relay_once() == 2
    assert await relay.relay_once() == 0
    async with sessions() as session:
        [refused] = await session.scalars(select(OutboxRow).where(OutboxRow.key == b"too-large"))
        listed = await set_aside(session)
    assert refused.refused_reason == "event_too_large"
    assert [[(r.key, r.reason, r.event_type) for r in rows] for rows in told] == [
        [("too-large", "event_too_large", "careteams.unavailable")]
    ]
    assert [(r.event_id, r.topic, r.reason) for r in listed] == [
        (refused.event_id, topics.CARE_TEAMS, "event_too_large")
    ]
    assert listed[0].size > 2_000_000
    assert gauge.value == 1
    found = await read_topic(
        kafka_bootstrap, topics.CARE_TEAMS, lambda e: e.get("renewal_id") == str(renewal_id), 2
    )
    assert len(found) == 2


async def test_what_fails_while_an_event_is_set_aside_leaves_it_to_be_tried_again(
    sessions: async_sessionmaker[AsyncSession], broker: KafkaBroker
) -> None:
    async with sessions.begin() as session:
        session.add(oversized_row(b"retried"))

    async def failing(session: AsyncSession, rows: Sequence[SetAside]) -> None:
        raise RuntimeError("the service could not record the failure")

    with pytest.raises(RuntimeError):
        await OutboxRelay(sessions, broker, on_set_aside=failing).relay_once()
    async with sessions() as session:
        [row] = await session.scalars(select(OutboxRow).where(OutboxRow.key == b"retried"))
    assert (row.published_at, row.refused_reason) == (None, None)
