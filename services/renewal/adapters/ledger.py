"""The journey ledger in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2.

One row per renewal request (accepted or refused) and one per step it reached. A step's primary key
is the id of the event that recorded it; the ledger consumer also records each event id in the inbox
(plumbing.outbox), in the same transaction. Retention deletes finished renewals with their steps
(``prune_finished``); a late event about one is then about no renewal of ours, and is ignored.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ColumnElement,
    ForeignKey,
    String,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime
from plumbing.outbox import deleted
from schemas.vocabulary import Tool
from services.renewal.domain import Status, Step, StepRecord


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
    trace_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_since: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the ledger saw the renewal reach its status: the stall clock starts there, so a step
    published late (or recorded late) is not blamed on the tool that owns the next one."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stalled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stalled_step: Mapped[str | None] = mapped_column(String(32))
    stalled_tool: Mapped[str | None] = mapped_column(String(8))


class StepRow(Base):
    __tablename__ = "journey_steps"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    renewal_id: Mapped[str] = mapped_column(ForeignKey("renewals.id"), index=True)
    step: Mapped[str] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    error_code: Mapped[str | None] = mapped_column(String(64))
    retryable: Mapped[bool | None] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(String(1000))
    source_topic: Mapped[str | None] = mapped_column(String(255))

    @property
    def record(self) -> StepRecord:
        return StepRecord(
            step=Step(self.step),
            tool=Tool(self.tool),
            at=self.occurred_at,
            error_code=self.error_code,
            retryable=self.retryable,
            detail=self.detail,
            source_topic=self.source_topic,
        )


def open_key(veteran_id: str, prescription_id: str) -> str:
    return f"{veteran_id}/{prescription_id}"


async def by_idempotency_key(session: AsyncSession, key: str) -> RenewalRow | None:
    found = await session.scalars(select(RenewalRow).where(RenewalRow.idempotency_key == key))
    return found.first()


async def open_renewal(session: AsyncSession, key: str) -> RenewalRow | None:
    found = await session.scalars(select(RenewalRow).where(RenewalRow.open_key == key))
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
    """Delete up to ``limit`` renewals that finished before ``before``, with their steps. A finished
    renewal (refused, or closed by its last step) is one whose ``open_key`` is cleared."""
    finished = list(
        await session.scalars(
            select(RenewalRow.id)
            .where(RenewalRow.open_key.is_(None), RenewalRow.status_since < before)
            .order_by(RenewalRow.id)
            .limit(limit)
        )
    )
    if not finished:
        return {"journey_steps": 0, "renewals": 0}
    steps = await session.execute(delete(StepRow).where(StepRow.renewal_id.in_(finished)))
    renewals = await session.execute(delete(RenewalRow).where(RenewalRow.id.in_(finished)))
    return {"journey_steps": deleted(steps), "renewals": deleted(renewals)}
