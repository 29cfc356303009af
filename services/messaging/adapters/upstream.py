"""The upstream Secure Messaging system that delivers messages to care teams."""

from dataclasses import dataclass
from typing import Protocol
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.messaging.adapters.storage import UpstreamMessageRow


@dataclass(frozen=True)
class OutgoingMessage:
    """SM's send payload (domain.md section 4); ``draft_id`` doubles as the idempotency key."""

    draft_id: str
    recipient_id: int
    category: str
    subject: str
    body: str
    prescription_id: str | None


class SecureMessaging(Protocol):
    async def send(self, message: OutgoingMessage) -> str:
        """Deliver ``message`` and return SM's message id; the same draft never sends twice."""
        ...


class BuiltinSecureMessaging:
    """A stand-in SM mailbox in rxsm's own database, for local runs and tests."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def send(self, message: OutgoingMessage) -> str:
        async with self._sessions.begin() as session:
            existing = await session.scalar(
                select(UpstreamMessageRow.id).where(UpstreamMessageRow.draft_id == message.draft_id)
            )
            if existing is not None:
                return existing
            message_id = str(uuid4())
            session.add(
                UpstreamMessageRow(
                    id=message_id,
                    draft_id=message.draft_id,
                    recipient_id=message.recipient_id,
                    category=message.category,
                    subject=message.subject,
                    body=message.body,
                    prescription_id=message.prescription_id,
                )
            )
            return message_id
