"""The journey ledger in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2.

One row per renewal request (accepted or refused) and one per step it reached. A step's primary key
is the id of the event that recorded it, so an event delivered twice is recorded once.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, CursorResult, ForeignKey, String, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime
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
    source: Mapped[str] = mapped_column(String(8))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    open_key: Mapped[str | None] = mapped_column(String(130), unique=True)
    refusal: Mapped[str | None] = mapped_column(String(64))
    requested_event: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_since: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the ledger saw the renewal reach its status: the stall clock starts there, so a step
    published late (or recorded late) is not blamed on the tool that owns the next one."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    publishing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    """Set while one request publishes the renewal's event, so a concurrent repeat doesn't."""
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


async def claim_publish(
    session: AsyncSession, renewal_id: str, now: datetime, lease: timedelta
) -> bool:
    """Take the right to publish an unpublished renewal, unless another request holds it (for less
    than ``lease``)."""
    result = await session.execute(
        update(RenewalRow)
        .where(
            RenewalRow.id == renewal_id,
            RenewalRow.published_at.is_(None),
            or_(
                RenewalRow.publishing_since.is_(None),
                RenewalRow.publishing_since < now - lease,
            ),
        )
        .values(publishing_since=now)
    )
    return isinstance(result, CursorResult) and result.rowcount == 1
