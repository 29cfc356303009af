"""Drafts and sends in SQL (SQLite by default, PostgreSQL by URL), via SQLAlchemy 2.

A sent or deleted draft keeps its row, emptied of subject and body, so a care-teams event for the same
renewal finds it and does not prefill the renewal again. A draft keeps its journey's rollout cohort and
the W3C ``traceparent`` of the span that created it, so later requests on it join the journey's trace.
Retention deletes sent and deleted drafts, with their sends, once they are old (``prune_closed``).
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from sqlalchemy import (
    JSON,
    Boolean,
    CursorResult,
    Integer,
    String,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plumbing.database import UtcDateTime
from plumbing.outbox import deleted
from schemas.events import Platform, TeamSelection
from schemas.records import CareSystem
from schemas.vocabulary import Category, Ehr, PickerKind
from services.messaging.domain import DraftContent, DraftState, SendState


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class DraftRow(Base):
    __tablename__ = "message_drafts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    renewal_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=DraftState.OPEN.value)
    category: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    recipient_id: Mapped[int | None] = mapped_column(Integer)
    station_number: Mapped[str | None] = mapped_column(String(8))
    ehr: Mapped[str | None] = mapped_column(String(16))
    team_selection: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str | None] = mapped_column(String(16))
    prescription_id: Mapped[str | None] = mapped_column(String(64))
    care_systems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    picker: Mapped[str | None] = mapped_column(String(16))
    suggested_team_id: Mapped[int | None] = mapped_column(Integer)
    cohort: Mapped[str] = mapped_column(String(8))
    traceparent: Mapped[str | None] = mapped_column(String(55))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)

    def content(self) -> DraftContent:
        return DraftContent(
            renewal=self.renewal_id is not None,
            category=Category(self.category),
            subject=self.subject,
            body=self.body,
            recipient_id=self.recipient_id,
            station_number=self.station_number,
            ehr=Ehr(self.ehr) if self.ehr else None,
            team_selection=TeamSelection(self.team_selection) if self.team_selection else None,
            platform=Platform(self.platform) if self.platform else None,
        )

    def hold(self, content: DraftContent) -> None:
        """Store ``content`` in the row."""
        self.category = content.category.value
        self.subject = content.subject
        self.body = content.body
        self.recipient_id = content.recipient_id
        self.station_number = content.station_number
        self.ehr = content.ehr.value if content.ehr else None
        self.team_selection = content.team_selection.value if content.team_selection else None
        self.platform = content.platform.value if content.platform else None
        self.updated_at = _now()

    def close(self, state: DraftState) -> None:
        """The draft is gone for the Veteran (sent or deleted): keep its ids, drop its words."""
        self.state = state.value
        self.subject = ""
        self.body = ""
        self.updated_at = _now()

    def candidates(self) -> list[CareSystem]:
        return [CareSystem.model_validate(system) for system in self.care_systems]

    @property
    def picker_kind(self) -> PickerKind | None:
        return PickerKind(self.picker) if self.picker else None


class SendRow(Base):
    """One draft's send: its attempt, where it stands, and what the outcome events need."""

    __tablename__ = "message_sends"

    draft_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64), index=True)
    renewal_id: Mapped[str | None] = mapped_column(String(36), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(128))
    recipient_id: Mapped[int] = mapped_column(Integer)
    station_number: Mapped[str] = mapped_column(String(8))
    ehr: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    team_selection: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str | None] = mapped_column(String(16))
    cohort: Mapped[str] = mapped_column(String(8))
    error_code: Mapped[str | None] = mapped_column(String(16))
    retryable: Mapped[bool | None] = mapped_column(Boolean)
    sent_event_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    def address(self, draft: DraftRow) -> None:
        """Take the draft's current recipient, category, platform and cohort for this attempt."""
        content = draft.content()
        assert content.recipient_id is not None and content.station_number is not None
        self.recipient_id = content.recipient_id
        self.station_number = content.station_number
        self.ehr = (content.ehr or Ehr.VISTA).value
        self.category = content.category.value
        self.team_selection = draft.team_selection
        self.platform = draft.platform
        self.cohort = draft.cohort


class NoCareTeamRow(Base):
    """A renewal no care team could receive (its ``careteams.unavailable``), so the Veteran asking
    for its draft is told why there is none. Ids and SM's reason only."""

    __tablename__ = "renewals_without_care_team"

    renewal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    veteran_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class BuiltinMessageRow(Base):
    """The built-in stand-in for SM's mailbox: the messages themselves, one per idempotency key."""

    __tablename__ = "builtin_sm_messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    veteran_id: Mapped[str] = mapped_column(String(64))
    draft_id: Mapped[str] = mapped_column(String(36), index=True)
    recipient_id: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)
    prescription_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


async def open_draft(session: AsyncSession, draft_id: UUID, veteran_id: str) -> DraftRow | None:
    """The Veteran's open draft; another Veteran's draft, or a sent or deleted one, is not found."""
    draft = await session.get(DraftRow, str(draft_id))
    if draft is None or draft.veteran_id != veteran_id or draft.state != DraftState.OPEN:
        return None
    return draft


async def owned_draft(session: AsyncSession, draft_id: UUID, veteran_id: str) -> DraftRow | None:
    """The Veteran's draft in any state (open, sent or deleted); another Veteran's is not found."""
    draft = await session.get(DraftRow, str(draft_id))
    return draft if draft is not None and draft.veteran_id == veteran_id else None


async def draft_for_renewal(session: AsyncSession, renewal_id: UUID) -> DraftRow | None:
    """The renewal's draft in any state (a renewal is prefilled once)."""
    found = await session.scalars(select(DraftRow).where(DraftRow.renewal_id == str(renewal_id)))
    return found.first()


async def no_care_team(session: AsyncSession, renewal_id: UUID) -> NoCareTeamRow | None:
    """Why no care team could receive the renewal, if none could."""
    return await session.get(NoCareTeamRow, str(renewal_id))


async def renewals_without_care_team(
    session: AsyncSession, renewal_ids: Sequence[UUID]
) -> set[str]:
    """Which of these renewals no care team could receive (recorded already)."""
    found = await session.scalars(
        select(NoCareTeamRow.renewal_id).where(
            NoCareTeamRow.renewal_id.in_([str(r) for r in renewal_ids])
        )
    )
    return set(found)


async def prune_no_care_team(session: AsyncSession, before: datetime, limit: int) -> dict[str, int]:
    """Forget up to ``limit`` renewals without a care team recorded before ``before``."""
    oldest = (
        select(NoCareTeamRow.renewal_id)
        .where(NoCareTeamRow.recorded_at < before)
        .order_by(NoCareTeamRow.renewal_id)
        .limit(limit)
    )
    result = await session.execute(
        delete(NoCareTeamRow).where(NoCareTeamRow.renewal_id.in_(oldest))
    )
    return {"renewals_without_care_team": deleted(result)}


async def renewals_with_drafts(session: AsyncSession, renewal_ids: Sequence[UUID]) -> set[str]:
    """Which of these renewals have their draft already, in any state."""
    found = await session.scalars(
        select(DraftRow.renewal_id).where(DraftRow.renewal_id.in_([str(r) for r in renewal_ids]))
    )
    return {renewal_id for renewal_id in found if renewal_id is not None}


async def send_of(session: AsyncSession, draft_id: UUID, veteran_id: str) -> SendRow | None:
    send = await session.get(SendRow, str(draft_id), populate_existing=True)
    return send if send is not None and send.veteran_id == veteran_id else None


async def mark_sent(session: AsyncSession, draft_id: str, message_id: str, event_id: UUID) -> bool:
    """Record the send as SENT with its outcome event id; False when another request did it first."""
    result = await session.execute(
        update(SendRow)
        .where(SendRow.draft_id == draft_id, SendRow.state != SendState.SENT.value)
        .values(
            state=SendState.SENT.value,
            message_id=message_id,
            sent_event_id=str(event_id),
            sent_at=_now(),
            error_code=None,
            retryable=None,
        )
    )
    return cast(CursorResult[Any], result).rowcount == 1


async def builtin_message(session: AsyncSession, key: str) -> BuiltinMessageRow | None:
    found = await session.scalars(
        select(BuiltinMessageRow).where(BuiltinMessageRow.idempotency_key == key)
    )
    return found.first()


async def builtin_messages_of_draft(
    session: AsyncSession, draft_id: UUID
) -> list[BuiltinMessageRow]:
    found = await session.scalars(
        select(BuiltinMessageRow).where(BuiltinMessageRow.draft_id == str(draft_id))
    )
    return list(found)


async def prune_closed(session: AsyncSession, before: datetime, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` drafts sent or deleted before ``before``, with their sends."""
    closed = list(
        await session.scalars(
            select(DraftRow.id)
            .where(DraftRow.state != DraftState.OPEN.value, DraftRow.updated_at < before)
            .order_by(DraftRow.id)
            .limit(limit)
        )
    )
    if not closed:
        return {"message_sends": 0, "message_drafts": 0}
    sends = await session.execute(delete(SendRow).where(SendRow.draft_id.in_(closed)))
    drafts = await session.execute(delete(DraftRow).where(DraftRow.id.in_(closed)))
    return {"message_sends": deleted(sends), "message_drafts": deleted(drafts)}
