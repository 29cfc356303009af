"""The journey ledger in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2.

One row per renewal the journey has seen requested or refused, and one per step. A step's primary key
is the id of the event that recorded it, and the consumer records each event id in the inbox
(plumbing.outbox) in the same transaction. A step may arrive before the request that opens its
renewal (the ledger reads its topics in no fixed order): it is kept, and counts once the renewal is
there. Retention deletes finished renewals with their steps, and steps no renewal ever claimed
(``prune_finished``).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ColumnElement, String, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime
from plumbing.outbox import deleted
from schemas.vocabulary import Tool
from services.journey.domain import CLOSED, Status, Step, StepRecord


class Base(DeclarativeBase):
    pass


class RenewalRow(Base):
    """A renewal as the journey knows it, from its request (or refusal) on."""

    __tablename__ = "renewals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    """Whose renewal it is: a Veteran's token reads only their own (never answered, never logged)."""
    ehr: Mapped[str] = mapped_column(String(16))
    cohort: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str | None] = mapped_column(String(8))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), index=True)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    """The trace of the request, as its event carried it."""
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_since: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the ledger saw the renewal reach its status: the stall clock starts there, so a step
    published late (or recorded late) is not blamed on the tool that owns the next one."""
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """When the journey first closed: meds was told then (``renewal.closed``)."""
    stalled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stalled_step: Mapped[str | None] = mapped_column(String(32))
    stalled_tool: Mapped[str | None] = mapped_column(String(8))


class StepRow(Base):
    __tablename__ = "journey_steps"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    renewal_id: Mapped[str] = mapped_column(String(36), index=True)
    step: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    retryable: Mapped[bool | None] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(String(1000))
    source_topic: Mapped[str | None] = mapped_column(String(255))
    topic_owner: Mapped[str | None] = mapped_column(String(8))
    refused_by: Mapped[str | None] = mapped_column(String(128))

    @property
    def record(self) -> StepRecord:
        return step_record(self)


def step_record(row: Any) -> StepRecord:
    """The step a ``journey_steps`` row holds: a ``StepRow``, or a plain row read by a query."""
    return StepRecord(
        step=Step(row.step),
        tool=Tool(row.tool),
        at=row.occurred_at,
        error_code=row.error_code,
        retryable=row.retryable,
        detail=row.detail,
        source_topic=row.source_topic,
        topic_owner=Tool(row.topic_owner) if row.topic_owner else None,
        refused_by=row.refused_by,
    )


async def by_idempotency_key(session: AsyncSession, key: str) -> RenewalRow | None:
    found = await session.scalars(select(RenewalRow).where(RenewalRow.idempotency_key == key))
    return found.first()


async def renewals_locked(
    session: AsyncSession, renewal_ids: Sequence[str]
) -> Sequence[RenewalRow]:
    """The renewals with these ids, locked for update (on PostgreSQL) in the order of their ids."""
    found = await session.scalars(
        select(RenewalRow)
        .where(RenewalRow.id.in_(renewal_ids))
        .order_by(RenewalRow.id)
        .with_for_update()
    )
    return found.all()


async def steps_of(session: AsyncSession, renewal_id: str) -> Sequence[StepRow]:
    found = await session.scalars(
        select(StepRow)
        .where(StepRow.renewal_id == renewal_id)
        .order_by(StepRow.occurred_at, StepRow.recorded_at)
    )
    return found.all()


async def waiting_since_before(
    session: AsyncSession, statuses: Sequence[Status], cutoff: datetime
) -> Sequence[RenewalRow]:
    """Renewals not yet marked stalled that have been in one of ``statuses`` since before ``cutoff``."""
    found = await session.scalars(
        select(RenewalRow).where(
            RenewalRow.stalled_at.is_(None),
            RenewalRow.status.in_([status.value for status in statuses]),
            RenewalRow.status_since < cutoff,
        )
    )
    return found.all()


def updated_at() -> ColumnElement[datetime]:
    """When a renewal reached its status as the ledger shows it (for a stall: when it was marked)."""
    return func.coalesce(RenewalRow.stalled_at, RenewalRow.status_since)


async def listed(
    session: AsyncSession,
    statuses: frozenset[Status],
    since: datetime | None,
    limit: int,
) -> Sequence[RenewalRow]:
    """Renewals shown in one of ``statuses`` (all when empty) that got there at or after ``since``,
    most recent first. A stalled renewal is shown as ``stalled``, whatever status it waits in."""
    query = select(RenewalRow)
    if statuses:
        plain = [status.value for status in statuses if status is not Status.STALLED]
        shown = [and_(RenewalRow.stalled_at.is_(None), RenewalRow.status.in_(plain))]
        if Status.STALLED in statuses:
            shown.append(RenewalRow.stalled_at.is_not(None))
        query = query.where(or_(*shown))
    if since is not None:
        query = query.where(updated_at() >= since)
    found = await session.scalars(query.order_by(updated_at().desc()).limit(limit))
    return found.all()


async def steps_of_each(
    session: AsyncSession, renewal_ids: Sequence[str]
) -> dict[str, list[StepRow]]:
    """The steps of each renewal in ``renewal_ids``, in order."""
    steps: dict[str, list[StepRow]] = {renewal_id: [] for renewal_id in renewal_ids}
    found = await session.scalars(
        select(StepRow)
        .where(StepRow.renewal_id.in_(renewal_ids))
        .order_by(StepRow.occurred_at, StepRow.recorded_at)
    )
    for step in found:
        steps[step.renewal_id].append(step)
    return steps


async def prune_finished(session: AsyncSession, before: datetime, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` renewals that finished (reached a closed status) before ``before``,
    with their steps, and steps recorded before ``before`` that no renewal claimed (a dead letter
    keyed by a general message's draft, say)."""
    finished = list(
        await session.scalars(
            select(RenewalRow.id)
            .where(
                RenewalRow.status.in_([status.value for status in CLOSED]),
                RenewalRow.status_since < before,
            )
            .order_by(RenewalRow.id)
            .limit(limit)
        )
    )
    unclaimed = (
        select(StepRow.event_id)
        .where(
            StepRow.recorded_at < before,
            StepRow.renewal_id.not_in(select(RenewalRow.id)),
        )
        .limit(limit)
    )
    orphans = await session.execute(delete(StepRow).where(StepRow.event_id.in_(unclaimed)))
    if not finished:
        return {"journey_steps": deleted(orphans), "renewals": 0}
    steps = await session.execute(delete(StepRow).where(StepRow.renewal_id.in_(finished)))
    renewals = await session.execute(delete(RenewalRow).where(RenewalRow.id.in_(finished)))
    return {"journey_steps": deleted(orphans) + deleted(steps), "renewals": deleted(renewals)}
