"""The intake never accepts a request it could not publish, and never leaves one it could not
publish open:

- a request whose event Kafka could never take is refused before anything is saved;
- a request whose event Kafka refuses all the same (a broker with a smaller limit than rxsm's) is
  failed on meds with the outbox's reason when the relay sets the event aside, and the prescription
  is free again: the next request for it starts a new renewal (it used to answer the dead one);
- an ingress record over 512 KiB is dead-lettered unread.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from sqlalchemy import func, select

from plumbing.database import create_tables, make_engine, session_factory
from plumbing.deadletter import PermanentError
from plumbing.metrics import ServiceMetrics
from plumbing.outbox import EventTooLarge, OutboxBase, OutboxRelay, OutboxRow, outbox_record
from schemas import topics
from schemas.events import RenewalRefused
from services.renewal import handlers
from services.renewal.adapters.ledger import Base
from services.renewal.domain import IntakeStatus
from services.renewal.entrypoints import (
    IDENTITY,
    INGRESS_RECORD_MAX_BYTES,
    bounded,
    fail_unpublished,
)
from services.renewal.handlers import Sessions
from tests.renewal.test_handlers import intake_of, renewal_count, renewal_request, request


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/renewal.db")
    await create_tables(engine, Base)
    await create_tables(engine, OutboxBase)
    yield session_factory(engine)
    await engine.dispose()


class Kafka:
    """The relay's broker: refuses records over ``max_bytes`` as aiokafka's producer does."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, *, topic: str, **_: Any) -> None:
        if len(value) > self.max_bytes:
            raise MessageSizeTooLargeError()
        self.published.append((topic, value))


def relay(sessions: Sessions, kafka: Kafka, metrics: ServiceMetrics) -> OutboxRelay:
    return OutboxRelay(
        sessions,
        cast(KafkaBroker, kafka),
        on_set_aside=fail_unpublished(metrics),
        set_aside_gauge=metrics.outbox_set_aside,
    )


async def test_a_request_event_kafka_refuses_fails_the_renewal_and_frees_the_prescription(
    sessions: Sessions,
) -> None:
    metrics = ServiceMetrics(IDENTITY)
    kafka = Kafka(max_bytes=1_200)
    body = renewal_request(sig="TAKE ONE TABLET BY MOUTH DAILY " * 40)
    first = await request(sessions, body, "key-1")

    assert await relay(sessions, kafka, metrics).relay_once() == 0
    await relay(sessions, kafka, metrics).relay_once()

    found = await intake_of(sessions, first.renewal_id)
    assert (found.status, found.renewal.failure, found.renewal.open_key) == (
        IntakeStatus.FAILED,
        "event_too_large",
        None,
    )
    [(topic, value)] = kafka.published
    told = RenewalRefused.model_validate_json(value)
    assert (topic, told.renewal_id, told.code, told.tool) == (
        topics.RENEWAL_REFUSED,
        first.renewal_id,
        "event_too_large",
        "meds",
    )
    assert metrics.outbox_set_aside.value == 1
    text = metrics.prometheus_text().decode()
    assert 'reason="event_too_large",step="failed",tool="meds"' in text
    assert "rxsm_outbox_set_aside 1.0" in text

    again = await request(sessions, body)
    repeated = await request(sessions, body, "key-1")
    assert again.renewal_id != first.renewal_id and again.status is IntakeStatus.ACCEPTED
    assert (repeated.renewal_id, repeated.status) == (first.renewal_id, IntakeStatus.FAILED)


async def test_a_request_whose_event_kafka_could_never_take_is_refused_before_it_is_saved(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The field limits keep every real request's event far below Kafka's limit
    (tests/test_record_limits.py); the guard stands behind them: here with a limit of 1,500 bytes."""
    monkeypatch.setattr(handlers, "outbox_record", partial(outbox_record, max_bytes=1_500))

    with pytest.raises(EventTooLarge):
        await request(sessions, renewal_request(sig="x" * 1_500), "key-1")

    assert await renewal_count(sessions) == 0
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 0
    accepted = await request(sessions, renewal_request(), "key-1")
    assert accepted.status is IntakeStatus.ACCEPTED and not accepted.duplicate


class Record:
    def __init__(self, size: int) -> None:
        self.body = b"x" * size


async def test_an_ingress_record_over_512_kib_is_refused_before_it_is_read() -> None:
    decoded: list[int] = []

    async def decode(message: Any) -> int:
        decoded.append(len(message.body))
        return len(message.body)

    read = cast(Callable[..., Awaitable[Any]], decode)
    assert await bounded(cast(Any, Record(INGRESS_RECORD_MAX_BYTES)), read) == 512 * 1024
    with pytest.raises(PermanentError) as refused:
        await bounded(cast(Any, Record(INGRESS_RECORD_MAX_BYTES + 1)), read)

    assert refused.value.reason.startswith("record_too_large: the record is 524289 bytes")
    assert decoded == [INGRESS_RECORD_MAX_BYTES]
