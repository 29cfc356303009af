"""The upstream Secure Messaging system: who a Veteran may message, and delivery of their messages.

Two implementations of ``SecureMessaging``:

- ``BuiltinSecureMessaging`` (the default): a stand-in SM. Its mailbox is a table in the messaging
  service's own database; its recipients are SM "all recipients" data read from a JSON file (by default
  the demo SM data bundled with the repo, the same data the care-team service's demo directory reads),
  teams at a facility in a blocking Oracle Health migration phase (its ``migrationSchedules``) being
  blocked. VistA messages are sent at once; Oracle Health messages are accepted, then SENT when first polled.
  A renewal keeps its prescription id, as SM's renewal endpoint does; a general message has none.
- ``HttpSecureMessaging``: an SM-compatible HTTP API, with these calls:

  - ``GET {base}/veterans/{veteran_id}/recipients``: SM's ``alltriageteams`` answer,
    ``[{"associatedTriageGroups": n, ...}, {"triageTeam": [...]}]`` with SM's field names, or
    vets-api's JSON:API answer ``{"data": [{"attributes": {...}}], "meta": {...}}``.
  - ``POST {base}/messages`` with ``Idempotency-Key`` and the send payload of domain.md section 4
    (``veteran_id``, ``recipient_id``, ``category``, ``subject``, ``body``, ``draft_id``); a renewal
    (a message with a prescription id) goes to ``POST {base}/messages/renewal`` with
    ``prescription_id`` too, as vets-api sends it to SM's ``message/renewal``
    (``lib/sm/client/message_sending.rb``). Answer: ``{"id": ..., "status": "SENT"}`` (VistA), or
    ``"PENDING"`` when Oracle Health accepted it.
  - ``GET {base}/messages/{id}/status``: ``{"status": ...}`` (or ``{"data": {"status": ...}}``), read
    as vets-api reads it: upper-cased; SENT, FAILED, INVALID, UNKNOWN and NOT_SUPPORTED are final,
    any other word (``IN_PROGRESS``, ``PENDING``) or none means not yet.

  An error answer carries SM's code as ``{"errorCode": "SM151", ...}``. A timeout or a connection
  failure is SM901 (retryable: the send is retried under the same idempotency key, so SM keeps one).
"""

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import httpx
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.records import CareTeam
from schemas.vocabulary import Ehr
from services.messaging import domain
from services.messaging.adapters import storage
from services.messaging.adapters.storage import BuiltinMessageRow
from services.messaging.domain import DeliveryStatus, Recipients, SmError, sm_error


@dataclass(frozen=True)
class OutgoingMessage:
    """SM's send payload (domain.md section 4), with the key SM deduplicates the attempt by; a
    renewal's carries its prescription id (None for a general message)."""

    idempotency_key: str
    veteran_id: str
    draft_id: str
    recipient_id: int
    ehr: Ehr
    category: str
    subject: str
    body: str
    prescription_id: str | None

    @property
    def renewal(self) -> bool:
        """Whether it goes to SM's renewal endpoint (it names a prescription)."""
        return domain.renewal_send(self.prescription_id)


@dataclass(frozen=True)
class Receipt:
    """SM's answer to a send: the message id, SENT, or PENDING while Oracle Health works on it."""

    message_id: str
    status: DeliveryStatus


class SecureMessaging(Protocol):
    async def recipients(self, veteran_id: str) -> Recipients:
        """The care teams SM lets the Veteran message, and those the Veteran is blocked from."""
        ...

    async def send(self, message: OutgoingMessage) -> Receipt:
        """Hand ``message`` to SM; the same idempotency key always answers the same message."""
        ...

    async def status(self, message_id: str) -> DeliveryStatus:
        """Where an accepted message stands."""
        ...

    async def close(self) -> None: ...


class _SmRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TriageTeamRecord(_SmRecord):
    """The fields of one SM "all recipients" record that decide whether it can be messaged."""

    triageTeamId: int  # noqa: N815 - SM's field names
    name: str
    stationNumber: str  # noqa: N815
    blockedStatus: bool = False  # noqa: N815
    preferredTeam: bool = False  # noqa: N815
    suggestedNameDisplay: str | None = None  # noqa: N815
    healthCareSystemName: str | None = None  # noqa: N815
    ohTriageGroup: bool = False  # noqa: N815
    migratingToOh: bool = False  # noqa: N815

    @property
    def blocked(self) -> bool:
        """Blocked by SM, or forced blocked while its facility migrates to Oracle Health."""
        return self.blockedStatus or self.migratingToOh

    def care_team(self) -> CareTeam:
        return CareTeam(
            triageTeamId=self.triageTeamId,
            name=self.name,
            displayName=self.suggestedNameDisplay or self.name,
            stationNumber=self.stationNumber,
            careSystemName=self.healthCareSystemName or self.stationNumber,
            ehr=Ehr.ORACLE_HEALTH if self.ohTriageGroup else Ehr.VISTA,
        )


class _TriageTeams(_SmRecord):
    triageTeam: list[TriageTeamRecord] = Field(default_factory=list)  # noqa: N815


def _sm_records(answer: Any) -> Any:
    """The records of either shape of SM's answer: MHV's list (``[{counts}, {"triageTeam": [...]}]``,
    vets-api's recorded answers) or vets-api's JSON:API answer (``{"data": [{"attributes": ...}]}``)."""
    if isinstance(answer, dict) and "data" in answer:
        data = answer["data"]
        if not isinstance(data, list):
            return data
        return [item.get("attributes") if isinstance(item, dict) else item for item in data]
    parts = answer if isinstance(answer, list) else [answer]
    teams = (
        part["triageTeam"] for part in parts if isinstance(part, dict) and "triageTeam" in part
    )
    return next(teams, [])


def recipients_from_sm(answer: Any, migrating: Collection[str] = ()) -> Recipients:
    """Recipients from SM's ``alltriageteams`` answer, in either shape (fields neither defines are
    ignored); teams at the ``migrating`` stations are blocked too.

    A record is allowed when it is preferred and not blocked (vets-website ``reducers/recipients.js``);
    a team SM lists twice, allowed once and blocked once, is allowed, as in VA.gov's allowed list.
    """
    records = _TriageTeams.model_validate({"triageTeam": _sm_records(answer)}).triageTeam
    allowed = [
        r for r in records if r.preferredTeam and not (r.blocked or r.stationNumber in migrating)
    ]
    allowed_ids = {r.triageTeamId for r in allowed}
    blocked = {
        r.triageTeamId
        for r in records
        if (r.blocked or r.stationNumber in migrating) and r.triageTeamId not in allowed_ids
    }
    return Recipients(allowed=tuple(r.care_team() for r in allowed), blocked=frozenset(blocked))


def _migrating_stations(veteran: dict[str, Any]) -> set[str]:
    """Stations the demo data's migration schedules put in a blocking phase (p3 to p6)."""
    return {
        str(facility.get("facilityId"))
        for schedule in veteran.get("migrationSchedules", [])
        if domain.migration_blocks(str(schedule.get("phases", {}).get("current", "")))
        for facility in schedule.get("facilities", [])
    }


class BuiltinSecureMessaging:
    """A stand-in SM in rxsm's own database, for local runs, the demo and tests."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], recipients_file: Path) -> None:
        self._sessions = sessions
        data: dict[str, Any] = json.loads(recipients_file.read_text())
        self._recipients = {
            veteran_id: recipients_from_sm(
                veteran.get("allTriageTeams", []), _migrating_stations(veteran)
            )
            for veteran_id, veteran in data.get("veterans", {}).items()
        }

    async def recipients(self, veteran_id: str) -> Recipients:
        return self._recipients.get(veteran_id, Recipients())

    async def send(self, message: OutgoingMessage) -> Receipt:
        status = DeliveryStatus.PENDING if message.ehr is Ehr.ORACLE_HEALTH else DeliveryStatus.SENT
        try:
            async with self._sessions.begin() as session:
                existing = await storage.builtin_message(session, message.idempotency_key)
                if existing is not None:
                    return Receipt(existing.id, DeliveryStatus(existing.status))
                row = BuiltinMessageRow(
                    id=str(uuid4()),
                    idempotency_key=message.idempotency_key,
                    veteran_id=message.veteran_id,
                    draft_id=message.draft_id,
                    recipient_id=message.recipient_id,
                    category=message.category,
                    subject=message.subject,
                    body=message.body,
                    prescription_id=message.prescription_id if message.renewal else None,
                    status=status.value,
                )
                session.add(row)
        except IntegrityError:
            async with self._sessions() as session:  # the same attempt was stored meanwhile
                existing = await storage.builtin_message(session, message.idempotency_key)
            if existing is None:
                raise
            return Receipt(existing.id, DeliveryStatus(existing.status))
        return Receipt(row.id, status)

    async def status(self, message_id: str) -> DeliveryStatus:
        async with self._sessions.begin() as session:
            row = await session.get(BuiltinMessageRow, message_id)
            if row is None:
                raise sm_error("SM904")
            row.status = DeliveryStatus.SENT.value
        return DeliveryStatus.SENT

    async def close(self) -> None:
        return None


MESSAGES_PATH = "/messages"
RENEWAL_PATH = "/messages/renewal"
"""Where a renewal is sent: SM's renewal endpoint, as vets-api routes a message with a prescription id
to ``message/renewal`` (``lib/sm/client/message_sending.rb``)."""


class HttpSecureMessaging:
    """An SM-compatible HTTP API (see the module's docstring for its calls)."""

    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_seconds, transport=transport
        )

    async def recipients(self, veteran_id: str) -> Recipients:
        answer = await self._call("GET", f"/veterans/{veteran_id}/recipients")
        return recipients_from_sm(answer)

    async def send(self, message: OutgoingMessage) -> Receipt:
        payload: dict[str, Any] = {
            "veteran_id": message.veteran_id,
            "recipient_id": message.recipient_id,
            "category": message.category,
            "subject": message.subject,
            "body": message.body,
            "draft_id": message.draft_id,
        }
        if message.renewal:
            payload["prescription_id"] = message.prescription_id
        answer = await self._call(
            "POST",
            RENEWAL_PATH if message.renewal else MESSAGES_PATH,
            headers={"Idempotency-Key": message.idempotency_key},
            json=payload,
        )
        try:
            return Receipt(str(answer["id"]), self._status_of(answer))
        except (KeyError, TypeError):
            raise sm_error("SM99") from None

    async def status(self, message_id: str) -> DeliveryStatus:
        return self._status_of(await self._call("GET", f"{MESSAGES_PATH}/{message_id}/status"))

    async def close(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _status_of(answer: Any) -> DeliveryStatus:
        """The status of SM's answer, bare or under ``data`` as vets-api reads it; an answer that is
        not an object is SM99."""
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            answer = answer["data"]
        if not isinstance(answer, dict):
            raise sm_error("SM99")
        return domain.delivery_status(answer.get("status"))

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError:
            raise sm_error("SM901") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise sm_error("SM99") from None
        raise self._error_of(response)

    @staticmethod
    def _error_of(response: httpx.Response) -> SmError:
        try:
            code = response.json().get("errorCode")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, str):
            return sm_error(code)
        return sm_error("SM901" if response.status_code == 503 else "SM99")
