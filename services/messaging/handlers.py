"""Use cases of the messaging service: create the renewal draft, send a draft.

Each use case commits its database change first and publishes its event after. A redelivered event or a
retried send finds the committed state and publishes the same event again (same event id), so consumers
see at-least-once delivery and deduplicate by event id.
"""

from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from plumbing.publishing import Publish
from schemas.events import CareTeamsResolved, DraftCreated, MessageSent
from schemas.records import CareTeam
from schemas.vocabulary import Category, Ehr
from services.messaging import domain
from services.messaging.adapters import storage
from services.messaging.adapters.storage import DraftRow, SentMessageRow
from services.messaging.adapters.upstream import OutgoingMessage, SecureMessaging

Sessions = async_sessionmaker[AsyncSession]


def _suggested_team(event: CareTeamsResolved) -> CareTeam | None:
    for system in event.care_systems:
        for team in system.teams:
            if team.triageTeamId == event.suggested_team_id:
                return team
    return None


def draft_created_event(draft: DraftRow) -> DraftCreated:
    return DraftCreated(
        event_id=UUID(draft.created_event_id),
        occurred_at=draft.created_at,
        renewal_id=UUID(draft.renewal_id) if draft.renewal_id else None,
        draft_id=UUID(draft.id),
        veteran_id=draft.veteran_id,
        ehr=Ehr(draft.ehr) if draft.ehr else None,
        category=Category(draft.category),
        recipient_id=draft.recipient_id,
    )


async def create_renewal_draft(
    event: CareTeamsResolved, sessions: Sessions, publish: Publish
) -> DraftCreated:
    """The prefilled renewal draft, addressed to the suggested team (or to nobody yet)."""
    async with sessions.begin() as session:
        draft = await storage.draft_for_renewal(session, event.renewal_id)
        if draft is None:
            team = _suggested_team(event)
            draft = DraftRow(
                id=str(uuid4()),
                veteran_id=event.veteran_id,
                renewal_id=str(event.renewal_id),
                category=Category.MEDICATIONS.value,
                subject=domain.RENEWAL_SUBJECT,
                body=domain.renewal_body(event.prescription),
                recipient_id=team.triageTeamId if team else None,
                station_number=team.stationNumber if team else None,
                ehr=(team.ehr if team else event.ehr).value,
                prescription_id=event.prescription.prescriptionId,
                care_systems=[system.model_dump(mode="json") for system in event.care_systems],
                created_event_id=str(uuid4()),
                created_at=event.occurred_at,
            )
            session.add(draft)
    created = draft_created_event(draft)
    await publish(created)
    return created


def _sent_event(sent: SentMessageRow) -> MessageSent:
    return MessageSent(
        event_id=UUID(sent.sent_event_id),
        occurred_at=sent.sent_at,
        renewal_id=UUID(sent.renewal_id) if sent.renewal_id else None,
        message_id=sent.message_id,
        draft_id=UUID(sent.draft_id),
        veteran_id=sent.veteran_id,
        recipient_id=sent.recipient_id,
        station_number=sent.station_number,
        ehr=Ehr(sent.ehr),
        category=Category(sent.category),
    )


class DraftNotFound(Exception):
    pass


async def send_draft(
    draft_id: UUID, veteran_id: str, sessions: Sessions, upstream: SecureMessaging, publish: Publish
) -> MessageSent:
    """Send the Veteran's draft once: a second send returns the first message; the draft is deleted."""
    async with sessions.begin() as session:
        sent = await storage.sent_for_draft(session, draft_id)
        if sent is not None and sent.veteran_id == veteran_id:
            event = _sent_event(sent)
        else:
            draft = await storage.draft_for_owner(session, draft_id, veteran_id)
            if draft is None:
                raise DraftNotFound(str(draft_id))
            if draft.recipient_id is None or draft.station_number is None:
                raise domain.recipient_missing()
            domain.check_subject(draft.subject)
            domain.check_body(draft.body)
            message_id = await upstream.send(
                OutgoingMessage(
                    draft_id=draft.id,
                    recipient_id=draft.recipient_id,
                    category=draft.category,
                    subject=draft.subject,
                    body=draft.body,
                    prescription_id=draft.prescription_id,
                )
            )
            sent = SentMessageRow(
                draft_id=draft.id,
                message_id=message_id,
                veteran_id=draft.veteran_id,
                renewal_id=draft.renewal_id,
                recipient_id=draft.recipient_id,
                station_number=draft.station_number,
                ehr=draft.ehr or Ehr.VISTA.value,
                category=draft.category,
                sent_event_id=str(uuid4()),
                sent_at=datetime.now(UTC),
            )
            session.add(sent)
            await session.delete(draft)
            await session.flush()
            event = _sent_event(sent)
    await publish(event)
    return event
