"""An event Kafka would refuse for its size is never staged: the transaction staging it fails, and
nothing it did is kept. Kafka's limits: aiokafka's ``max_request_size`` (1,048,576 bytes by default,
checked by the producer before it sends) and the broker's ``message.max.bytes`` (1,048,588)."""

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka.producer.producer import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.outbox import EVENT_MAX_BYTES, EventTooLarge, OutboxBase, OutboxRow, stage
from schemas.events import CareTeamUnavailable, RenewalRequested
from schemas.records import Prescription


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await create_tables(engine, OutboxBase)
    yield session_factory(engine)
    await engine.dispose()


def requested(sig: str) -> RenewalRequested:
    """A renewal event whose prescription bypasses the record's field limits (model_construct), as
    an event larger than anything the limits let through."""
    prescription = Prescription.model_construct(prescriptionId="rx-1", sig=sig)
    return RenewalRequested(
        renewal_id=uuid4(), veteran_id="v-1", ehr="vista", prescription=prescription
    )


def test_the_limit_is_below_what_the_producer_and_the_broker_take_by_default() -> None:
    producer = inspect.signature(AIOKafkaProducer).parameters["max_request_size"].default
    broker_message_max_bytes = 1_048_588
    assert EVENT_MAX_BYTES < producer <= broker_message_max_bytes


async def test_an_event_over_the_limit_is_refused_and_its_transaction_keeps_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    other = CareTeamUnavailable(
        renewal_id=uuid4(), veteran_id="v-1", ehr="vista", reason="no_associations"
    )
    with pytest.raises(EventTooLarge) as refused:
        async with sessions.begin() as session:
            stage(session, other)
            stage(session, requested("x" * 1_500_000))

    assert refused.value.event_type == "renewal.requested"
    assert refused.value.size > EVENT_MAX_BYTES
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 0


async def test_the_limit_counts_the_record_as_kafka_does_key_value_and_headers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event = requested("x" * 1_000)
    async with sessions.begin() as session:
        stage(session, event, max_bytes=10_000)
    async with sessions() as session:
        [row] = await session.scalars(select(OutboxRow))
    with pytest.raises(EventTooLarge):
        async with sessions.begin() as session:
            stage(session, requested("x" * 1_000), max_bytes=len(row.value))
