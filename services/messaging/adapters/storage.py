"""Drafts and sent messages in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DraftRow(Base):
    __tablename__ = "drafts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    renewal_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    recipient_id: Mapped[int | None] = mapped_column(Integer)
    station_number: Mapped[str | None] = mapped_column(String(8))
    ehr: Mapped[str | None] = mapped_column(String(16))
    prescription_id: Mapped[str | None] = mapped_column(String(64))
    care_systems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_event_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class SentMessageRow(Base):
    """What was sent for a draft: one row per draft, so a second send finds the first."""

    __tablename__ = "sent_messages"

    draft_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    renewal_id: Mapped[str | None] = mapped_column(String(36))
    recipient_id: Mapped[int] = mapped_column(Integer)
    station_number: Mapped[str] = mapped_column(String(8))
    ehr: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    sent_event_id: Mapped[str] = mapped_column(String(36))
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class UpstreamMessageRow(Base):
    """The built-in stand-in for the SM system's mailbox: the sent messages themselves."""

    __tablename__ = "upstream_messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    draft_id: Mapped[str] = mapped_column(String(36), unique=True)
    recipient_id: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    prescription_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


async def draft_for_owner(
    session: AsyncSession, draft_id: UUID, veteran_id: str
) -> DraftRow | None:
    """The draft, only when it belongs to ``veteran_id`` (another Veteran's draft is not found)."""
    draft = await session.get(DraftRow, str(draft_id))
    return draft if draft is not None and draft.veteran_id == veteran_id else None


async def draft_for_renewal(session: AsyncSession, renewal_id: UUID) -> DraftRow | None:
    found = await session.scalars(select(DraftRow).where(DraftRow.renewal_id == str(renewal_id)))
    return found.first()


async def sent_for_draft(session: AsyncSession, draft_id: UUID) -> SentMessageRow | None:
    return await session.get(SentMessageRow, str(draft_id))


async def sent_for_renewal(session: AsyncSession, renewal_id: UUID) -> SentMessageRow | None:
    found = await session.scalars(
        select(SentMessageRow).where(SentMessageRow.renewal_id == str(renewal_id))
    )
    return found.first()
