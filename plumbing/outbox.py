"""Transactional outbox and inbox: a service's database change and its events cannot diverge.

- Outbox: a handler adds its events to the ``outbox`` table in the same transaction as its effect. The
  ``OutboxRelay`` publishes them to Kafka in order and marks them published only after Kafka acknowledged
  them; a crash in between publishes them again (same event ids), never loses them.
- Inbox: ``first_time`` records a consumed event id in the same transaction as its effect, so a redelivered
  event has no second effect; a batch in plain SQL asks which of its events were ``processed`` and
  records the rest with ``record_processed``.

The trace context of the transaction that wrote an event is stored with it, so the relay's publish joins
the handler's trace.

An event Kafka could never take is refused when it is staged (``EventTooLarge``), so the change that
made it fails with it. One Kafka refuses all the same (a broker with a smaller limit, a bad topic) is
set aside with its reason: it shows in ``rxsm outbox`` and in the ``rxsm_outbox_set_aside`` gauge, and
the service's ``on_set_aside`` fails what was waiting for it.

Retention (plumbing.retention) deletes published rows and old inbox ids with ``prune_outbox`` and
``prune_inbox``, a batch at a time.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import structlog
from aiokafka.errors import InvalidMessageError, InvalidTopicError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry.propagate import extract, inject
from sqlalchemy import (
    JSON,
    CursorResult,
    Integer,
    LargeBinary,
    String,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime, in_transaction
from plumbing.metrics import SetAsideGauge
from plumbing.publishing import EVENT_TYPE_HEADER
from schemas.events import Event
from schemas.topics import TOPIC_OF_EVENT

SET_ASIDE_REASONS: dict[type[Exception], str] = {
    MessageSizeTooLargeError: "event_too_large",
    InvalidTopicError: "topic_invalid",
    InvalidMessageError: "record_invalid",
}
"""What Kafka can never take, and the reason a row set aside for it records."""
UNPUBLISHABLE = tuple(SET_ASIDE_REASONS)
EVENT_MAX_BYTES = 1_000_000
"""The largest Kafka record (key, value and headers, as aiokafka sizes it) ``stage`` takes. Kafka
refuses larger ones: the producer checks aiokafka's ``max_request_size`` (1,048,576 bytes by
default, as rxsm's brokers are made) before sending, and the broker its ``message.max.bytes``
(1,048,588 by default). The 48 KiB between leave room for the headers added when the event is
published (its trace context)."""
log = structlog.get_logger("rxsm.outbox")


class EventTooLarge(ValueError):
    """An event Kafka would refuse for its size: it is never staged, and the transaction that staged
    it fails (so nothing it did is kept)."""

    def __init__(self, event_type: str, size: int, limit: int = EVENT_MAX_BYTES) -> None:
        super().__init__(f"the {event_type} event would be {size} bytes on Kafka, over {limit}")
        self.event_type = event_type
        self.size = size
        self.limit = limit


def record_size(key: bytes, value: bytes, headers: dict[str, str]) -> int:
    """A Kafka record's size as the producer measures it against ``max_request_size``."""
    encoded = [(name, header.encode()) for name, header in headers.items()]
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, encoded))


class OutboxBase(DeclarativeBase):
    """The outbox and inbox tables, created beside each service's own tables."""


class OutboxRow(OutboxBase):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    refused_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    """Set when Kafka can never take the record (too large, bad topic); it is not retried."""


class ProcessedEventRow(OutboxBase):
    __tablename__ = "processed_events"

    consumer_group: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    """Retention deletes ids by it (``prune_inbox``)."""


def _now() -> datetime:
    return datetime.now(UTC)


def outbox_record(event: Event, max_bytes: int = EVENT_MAX_BYTES) -> dict[str, Any]:
    """The outbox row of ``event`` (its columns, for a Core ``INSERT``), carrying the current trace
    context. ``EventTooLarge`` when its record would be over ``max_bytes``: Kafka could never take
    it."""
    headers: dict[str, str] = {EVENT_TYPE_HEADER: event.event_type}
    inject(headers)
    value = event.model_dump_json().encode()
    size = record_size(event.key, value, headers)
    if size > max_bytes:
        raise EventTooLarge(event.event_type, size, max_bytes)
    return {
        "event_id": str(event.event_id),
        "topic": TOPIC_OF_EVENT[event.event_type],
        "key": event.key,
        "value": value,
        "headers": headers,
        "created_at": _now(),
        "published_at": None,
    }


def stage(session: AsyncSession, event: Event, max_bytes: int = EVENT_MAX_BYTES) -> dict[str, Any]:
    """Add ``event`` to the outbox in the caller's transaction; it is published after commit (by
    the caller, with the row returned here: ``OutboxRelay.publish_soon``; else by the relay).
    ``EventTooLarge`` when its record would be over ``max_bytes``: Kafka could never take it."""
    record = outbox_record(event, max_bytes)
    session.add(OutboxRow(**record))
    return record


def stage_all(connection: Connection, records: Sequence[dict[str, Any]]) -> None:
    """Insert ``outbox_record`` rows in the caller's transaction (a sync Core connection), in one
    ``executemany``; they are published after commit (``OutboxRelay.publish``)."""
    if records:
        connection.execute(insert(OutboxRow), list(records))


@dataclass(frozen=True)
class SetAside:
    """An event Kafka refused for good, set aside in the outbox (ids, sizes and the reason only)."""

    event_id: str
    event_type: str
    topic: str
    key: str
    """The Kafka key: the renewal id (or the draft id) the event is about."""
    size: int
    reason: str
    created_at: datetime
    set_aside_at: datetime | None

    @classmethod
    def of(cls, row: OutboxRow) -> "SetAside":
        return cls(
            event_id=row.event_id,
            event_type=row.headers.get(EVENT_TYPE_HEADER, ""),
            topic=row.topic,
            key=row.key.decode("utf-8", "replace"),
            size=len(row.value),
            reason=row.refused_reason or "",
            created_at=row.created_at,
            set_aside_at=row.published_at,
        )


async def set_aside(session: AsyncSession, limit: int = 1000) -> list[SetAside]:
    """The events set aside, most recent first (``rxsm outbox`` lists them)."""
    rows = await session.scalars(
        select(OutboxRow)
        .where(OutboxRow.refused_reason.is_not(None))
        .order_by(OutboxRow.id.desc())
        .limit(limit)
    )
    return [SetAside.of(row) for row in rows]


async def count_set_aside(session: AsyncSession) -> int:
    found = await session.scalar(
        select(func.count()).select_from(OutboxRow).where(OutboxRow.refused_reason.is_not(None))
    )
    return int(found or 0)


OnSetAside = Callable[[AsyncSession, Sequence[SetAside]], Awaitable[None]]
"""What a service does, in the relay's transaction, about events just set aside (e.g. fail the
renewal whose event it was)."""


async def first_time(session: AsyncSession, consumer_group: str, event_id: object) -> bool:
    """True the first time ``consumer_group`` processes ``event_id`` (recorded in this transaction)."""
    key = (consumer_group, str(event_id))
    if await session.get(ProcessedEventRow, key) is not None:
        return False
    mark_processed(session, consumer_group, event_id)
    return True


def processed(connection: Connection, consumer_group: str, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` ``consumer_group`` has processed already: one query for a batch, in
    the caller's transaction (a sync Core connection)."""
    found = connection.scalars(
        select(ProcessedEventRow.event_id).where(
            ProcessedEventRow.consumer_group == consumer_group,
            ProcessedEventRow.event_id.in_(event_ids),
        )
    )
    return set(found)


def record_processed(connection: Connection, consumer_group: str, event_ids: Sequence[str]) -> None:
    """Record in the caller's transaction (one ``executemany``) that ``consumer_group`` processed
    ``event_ids``, with the effects of processing them."""
    if event_ids:
        at = _now()
        connection.execute(
            insert(ProcessedEventRow),
            [
                {"consumer_group": consumer_group, "event_id": event_id, "processed_at": at}
                for event_id in event_ids
            ],
        )


def mark_processed(session: AsyncSession, consumer_group: str, event_id: object) -> None:
    """Record in the caller's transaction that ``consumer_group`` processed ``event_id``."""
    session.add(
        ProcessedEventRow(
            consumer_group=consumer_group, event_id=str(event_id), processed_at=_now()
        )
    )


def deleted(result: object) -> int:
    """How many rows a DELETE removed."""
    return cast(CursorResult[Any], result).rowcount


async def prune_outbox(
    session: AsyncSession, before: datetime, limit: int, *, refused: bool = False
) -> dict[str, int]:
    """Delete up to ``limit`` rows published before ``before`` (Kafka has the events); with
    ``refused``, the rows Kafka refused instead (set aside then)."""
    oldest = (
        select(OutboxRow.id)
        .where(
            OutboxRow.published_at < before,
            OutboxRow.refused_reason.is_not(None)
            if refused
            else OutboxRow.refused_reason.is_(None),
        )
        .order_by(OutboxRow.id)
        .limit(limit)
    )
    result = await session.execute(delete(OutboxRow).where(OutboxRow.id.in_(oldest)))
    return {"outbox": deleted(result)}


async def prune_inbox(session: AsyncSession, before: datetime, limit: int) -> dict[str, int]:
    """Forget up to ``limit`` event ids processed before ``before``: only safe once Kafka can no
    longer redeliver them (see plumbing.retention)."""
    key = tuple_(ProcessedEventRow.consumer_group, ProcessedEventRow.event_id)
    oldest = (
        select(ProcessedEventRow.consumer_group, ProcessedEventRow.event_id)
        .where(ProcessedEventRow.processed_at < before)
        .limit(limit)
    )
    result = await session.execute(delete(ProcessedEventRow).where(key.in_(oldest)))
    return {"processed_events": deleted(result)}


SWEEP_AFTER_SECONDS: Final = 2.0
"""How long a service's relay leaves a row to the code that wrote it, which publishes it right after
its commit (``OutboxRelay.publish_soon``); then the relay's sweep publishes it (after a crash, or a
publish that failed)."""


class OutboxRelay:
    """Publishes outbox rows to Kafka, oldest first, until stopped.

    ``notify()`` after a commit wakes it at once (to relay every pending row); otherwise it polls every
    ``idle_seconds``, sweeping the rows older than ``sweep_after_seconds`` (a service whose code
    publishes its rows right after its commit, ``publish``, leaves the relay what that missed). Rows
    are sent as a pipelined batch (every send in flight together, acks awaited together) and marked
    published in one transaction. With several instances on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets
    each row be relayed by one instance at a time.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broker: KafkaBroker,
        batch_size: int = 200,
        idle_seconds: float = 0.5,
        *,
        on_set_aside: OnSetAside | None = None,
        set_aside_gauge: SetAsideGauge | None = None,
        recount_seconds: float = 60.0,
        sweep_after_seconds: float = 0.0,
    ) -> None:
        self._sessions = sessions
        self._broker = broker
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._on_set_aside = on_set_aside
        self._gauge = set_aside_gauge
        self._recount_seconds = recount_seconds
        self._recounted_at: float | None = None
        self._sweep_after = timedelta(seconds=sweep_after_seconds)
        self._publishing: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()
        """Event ids ``publish`` is sending: the relay leaves them to it."""

    def notify(self) -> None:
        self._wake.set()

    async def recount(self) -> None:
        """Bring the set-aside gauge up to date (retention deletes old set-aside rows)."""
        if self._gauge is None:
            return
        async with self._sessions() as session:
            self._gauge.value = await count_set_aside(session)
        self._recounted_at = time.monotonic()

    async def run(self) -> None:
        published, everything = 0, False
        while True:
            recounted = self._recounted_at
            if recounted is None or time.monotonic() - recounted > self._recount_seconds:
                with contextlib.suppress(Exception):
                    await self.recount()
            everything = self._wake.is_set() or (everything and published == self._batch_size)
            self._wake.clear()
            try:
                published = await self.relay_once(everything=everything)
            except Exception as error:
                published = 0
                log.warning("outbox relay failed; retrying", error_type=type(error).__name__)
                await asyncio.sleep(self._idle_seconds)
            if published < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)

    async def publish(self, records: Sequence[dict[str, Any]]) -> None:
        """Publish rows the caller just committed (``outbox_record``), right away and together, then
        mark those Kafka acknowledged published in a transaction of their own. What fails here
        stays pending for the relay's sweep (``sweep_after_seconds`` later), which also sets aside
        what Kafka can never take; a crash in between publishes a row again (same event id)."""
        if not records:
            return
        ids = [record["event_id"] for record in records]
        self._in_flight.update(ids)
        try:
            await self._publish_records(records)
        finally:
            self._in_flight.difference_update(ids)

    async def _publish_records(self, records: Sequence[dict[str, Any]]) -> None:
        outcomes = await asyncio.gather(
            *(self._publish_record(record) for record in records), return_exceptions=True
        )
        done = [
            record["event_id"]
            for record, outcome in zip(records, outcomes, strict=True)
            if outcome is None
        ]
        if not done:
            return
        marked = (
            update(OutboxRow)
            .where(OutboxRow.event_id.in_(done), OutboxRow.published_at.is_(None))
            .values(published_at=_now())
        )
        try:
            await in_transaction(self._sessions.kw["bind"], lambda sync: sync.execute(marked))
        except Exception as error:
            log.warning("outbox rows not marked published", error_type=type(error).__name__)

    def publish_soon(self, records: Sequence[dict[str, Any]]) -> None:
        """``publish`` in a task of its own, so whoever committed need not wait for Kafka."""
        if records:
            self._in_flight.update(record["event_id"] for record in records)
            task = asyncio.create_task(self.publish(records))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def flush(self) -> None:
        """Wait for the publishes ``publish_soon`` started (on shutdown, before a drain)."""
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

    async def relay_once(self, *, everything: bool = False) -> int:
        """Publish one batch of pending rows; returns how many were published. Rows younger than
        ``sweep_after_seconds`` are left to the code that wrote them (``publish``), unless
        ``everything`` (a drain on shutdown).

        A row Kafka refused for a passing reason stays pending and is tried again; a row Kafka can
        never take (``UNPUBLISHABLE``) is set aside with the reason (``SET_ASIDE_REASONS``), so it
        cannot block the rest, and ``on_set_aside`` runs in the same transaction: both happen, or
        neither (and the rows are tried again).
        """
        async with self._sessions.begin() as session:
            query = (
                select(OutboxRow)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(self._batch_size)
            )
            if self._sweep_after and not everything:
                query = query.where(OutboxRow.created_at < _now() - self._sweep_after)
            if self._in_flight:
                query = query.where(OutboxRow.event_id.not_in(list(self._in_flight)))
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            if not rows:
                return 0
            outcomes = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
            now = _now()
            published = [
                row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None
            ]
            if published:
                await session.execute(
                    update(OutboxRow).where(OutboxRow.id.in_(published)).values(published_at=now)
                )
            refused = []
            for row, outcome in zip(rows, outcomes, strict=True):
                if isinstance(outcome, UNPUBLISHABLE):
                    row.published_at = now
                    row.refused_reason = SET_ASIDE_REASONS[type(outcome)]
                    refused.append(SetAside.of(row))
                    log.error(
                        "outbox event refused by Kafka; set aside",
                        event_id=row.event_id,
                        event_type=refused[-1].event_type,
                        topic=row.topic,
                        key=refused[-1].key,
                        size=len(row.value),
                        reason=row.refused_reason,
                        error_type=type(outcome).__name__,
                    )
            if refused and self._on_set_aside is not None:
                await self._on_set_aside(session, refused)
        if refused:
            with contextlib.suppress(Exception):
                await self.recount()
        return len(published)

    async def _publish(self, row: OutboxRow) -> None:
        await self._send(row.value, row.topic, row.key, row.headers)

    async def _publish_record(self, record: dict[str, Any]) -> None:
        await self._send(record["value"], record["topic"], record["key"], record["headers"])

    async def _send(self, value: bytes, topic: str, key: bytes, headers: dict[str, str]) -> None:
        token = otel_context.attach(extract(headers))
        try:
            await self._broker.publish(
                value,
                topic=topic,
                key=key,
                headers={
                    EVENT_TYPE_HEADER: headers[EVENT_TYPE_HEADER],
                    "content-type": "application/json",
                },
            )
        finally:
            otel_context.detach(token)
