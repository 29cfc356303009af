"""The renewal requests in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2.

One row per renewal request (accepted or refused): what the intake needs to answer a repeated request
with the same renewal, and to say where a renewal is until its event is on Kafka. Whether its event
is there is the outbox's to say (``delivery``). The journey itself is the journey service's; the
``journey_steps`` table of the ledger that ran here before stays, unused, for one release
(``RETIRED_JOURNEY_STEPS``). Retention deletes finished requests (``prune_finished``).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    String,
    Table,
    bindparam,
    case,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime
from plumbing.outbox import OutboxRow, deleted
from schemas import topics
from services.renewal.domain import IntakeStatus


class Base(DeclarativeBase):
    pass


class RenewalRow(Base):
    """A renewal request. ``open_key`` (Veteran + prescription) is set only while the renewal is
    open, so the database itself refuses a second open renewal of one prescription."""

    __tablename__ = "renewals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    prescription_id: Mapped[str] = mapped_column(String(64))
    ehr: Mapped[str] = mapped_column(String(16))
    cohort: Mapped[str] = mapped_column(String(8))
    """The rollout cohort (new / base), evaluated once, when the request came in."""
    source: Mapped[str] = mapped_column(String(8))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    open_key: Mapped[str | None] = mapped_column(String(130), unique=True)
    refusal: Mapped[str | None] = mapped_column(String(64))
    failure: Mapped[str | None] = mapped_column(String(64))
    """Why meds failed the renewal after accepting it: Kafka can never take its event, which the
    outbox set aside (event_too_large, topic_invalid, record_invalid)."""
    trace_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    """accepted or refused; the closing status once the journey service says the renewal closed."""
    status_since: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stalled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When the intake found its event still not on Kafka after the stall timeout (logged and
    counted once)."""
    stalled_step: Mapped[str | None] = mapped_column(String(32))
    stalled_tool: Mapped[str | None] = mapped_column(String(8))


RETIRED_JOURNEY_STEPS = Table(
    "journey_steps",
    Base.metadata,
    Column("event_id", String(36), primary_key=True),
    Column("renewal_id", ForeignKey("renewals.id"), index=True, nullable=False),
    Column("step", String(32), nullable=False),
    Column("tool", String(8), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("error_code", String(64)),
    Column("retryable", Boolean),
    Column("detail", String(1000)),
    Column("source_topic", String(255)),
)
"""The journey ledger's steps from when it ran in this service: nothing writes or reads them now (the
journey service keeps the journey). The table stays for one release, so a rollback to the release
before the journey service finds its schema; the next release's migration drops it."""


def open_key(veteran_id: str, prescription_id: str) -> str:
    return f"{veteran_id}/{prescription_id}"


async def by_idempotency_key(session: AsyncSession, key: str) -> RenewalRow | None:
    found = await session.scalars(select(RenewalRow).where(RenewalRow.idempotency_key == key))
    return found.first()


async def open_renewal(session: AsyncSession, key: str) -> RenewalRow | None:
    found = await session.scalars(select(RenewalRow).where(RenewalRow.open_key == key))
    return found.first()


Delivery = Literal["pending", "published", "set_aside"]


async def delivery(session: AsyncSession, renewal_id: str) -> Delivery:
    """Where the renewal's ``renewal requested`` event is: still in the outbox, on Kafka (or its
    outbox row is pruned already), or set aside because Kafka can never take it."""
    found = await session.execute(
        select(OutboxRow.published_at, OutboxRow.refused_reason).where(
            OutboxRow.topic == topics.RENEWAL_REQUESTED, OutboxRow.key == renewal_id.encode()
        )
    )
    row = found.first()
    if row is None:
        return "published"
    published_at, refused_reason = row
    if refused_reason is not None:
        return "set_aside"
    return "pending" if published_at is None else "published"


def deliveries(connection: Connection, renewal_ids: Sequence[str]) -> dict[str, Delivery]:
    """``delivery`` of each of the renewals, in one query (plain SQL, for a batch)."""
    if not renewal_ids:
        return {}
    found = connection.execute(
        select(OutboxRow.key, OutboxRow.published_at, OutboxRow.refused_reason).where(
            OutboxRow.topic == topics.RENEWAL_REQUESTED,
            OutboxRow.key.in_([renewal_id.encode() for renewal_id in renewal_ids]),
        )
    )
    return {
        key.decode(): "set_aside"
        if refused is not None
        else "pending"
        if published_at is None
        else "published"
        for key, published_at, refused in found
    }


async def unpublished_since_before(
    session: AsyncSession, cutoff: datetime, limit: int = 1000
) -> Sequence[RenewalRow]:
    """Accepted renewals, not yet marked stalled, whose event has waited in the outbox since before
    ``cutoff``."""
    keys = await session.scalars(
        select(OutboxRow.key)
        .where(
            OutboxRow.topic == topics.RENEWAL_REQUESTED,
            OutboxRow.published_at.is_(None),
            OutboxRow.created_at < cutoff,
        )
        .order_by(OutboxRow.id)
        .limit(limit)
    )
    renewal_ids = [key.decode() for key in keys]
    if not renewal_ids:
        return []
    found = await session.scalars(
        select(RenewalRow).where(
            RenewalRow.id.in_(renewal_ids),
            RenewalRow.status == IntakeStatus.ACCEPTED.value,
            RenewalRow.stalled_at.is_(None),
        )
    )
    return found.all()


def close(connection: Connection, closings: Sequence[tuple[str, str]], at: datetime) -> set[str]:
    """The journey service says these renewals closed, each with its final status: their
    prescriptions may be requested anew (a status already there keeps its time). Two statements,
    whatever the number; returns the ids of the renewals that are here (the rest are not, or no
    longer)."""
    ids = sorted({renewal_id for renewal_id, _ in closings})
    table = cast(Table, RenewalRow.__table__)
    here = set(connection.scalars(select(table.c.id).where(table.c.id.in_(ids))))
    found = [(renewal_id, status) for renewal_id, status in closings if renewal_id in here]
    if found:
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("renewal_id"))
            .values(
                open_key=None,
                status=bindparam("new_status"),
                status_since=case(
                    (table.c.status == bindparam("new_status"), table.c.status_since),
                    else_=bindparam("at"),
                ),
            ),
            [{"renewal_id": i, "new_status": status, "at": at} for i, status in found],
        )
    return here


FINISHED = frozenset(
    {
        IntakeStatus.REFUSED,
        IntakeStatus.CARE_TEAM_UNAVAILABLE,
        IntakeStatus.SENT,
        IntakeStatus.DRAFT_DELETED,
        IntakeStatus.DEAD_LETTERED,
        IntakeStatus.FAILED,
    }
)
"""A request is finished once refused, failed (its event set aside), or once the journey service
said its renewal closed."""


async def prune_finished(session: AsyncSession, before: datetime, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` requests that finished before ``before`` (with the retired journey
    steps a renewal from before the journey service may still have)."""
    finished = list(
        await session.scalars(
            select(RenewalRow.id)
            .where(
                RenewalRow.status.in_([status.value for status in FINISHED]),
                RenewalRow.status_since < before,
            )
            .order_by(RenewalRow.id)
            .limit(limit)
        )
    )
    if not finished:
        return {"renewals": 0}
    retired = RETIRED_JOURNEY_STEPS.c.renewal_id.in_(finished)
    await session.execute(delete(RETIRED_JOURNEY_STEPS).where(retired))
    renewals = await session.execute(delete(RenewalRow).where(RenewalRow.id.in_(finished)))
    return {"renewals": deleted(renewals)}
