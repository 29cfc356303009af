"""How requests reach the messaging service: care-team events from Kafka, the SM front end over HTTP."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from faststream import Context
from faststream.kafka import KafkaRouter
from pydantic import BaseModel

from plumbing.auth import VeteranId
from plumbing.broker import consumer_options
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.publishing import Publish
from plumbing.telemetry import annotate, current_trace_id
from schemas import topics
from schemas.events import CareTeamsOutcome, CareTeamsResolved
from schemas.vocabulary import Tool
from services.messaging import domain, handlers
from services.messaging.adapters import storage
from services.messaging.adapters.upstream import SecureMessaging
from services.messaging.handlers import Sessions

IDENTITY = ServiceIdentity("messaging", Tool.SM)
log = get_logger(IDENTITY)


async def on_care_teams(
    event: CareTeamsOutcome,
    sessions: Annotated[Sessions, Context("sessions")],
    publish: Annotated[Publish, Context("publish")],
) -> None:
    """A resolved renewal gets its prefilled draft; "no care team" needs nothing from SM here."""
    if not isinstance(event, CareTeamsResolved):
        return
    annotate("draft.create", renewal_id=event.renewal_id, ehr=event.ehr)
    created = await handlers.create_renewal_draft(event, sessions, publish)
    log.info(
        "draft created",
        step="draft.create",
        renewal_id=str(event.renewal_id),
        draft_id=str(created.draft_id),
    )


def subscribers() -> KafkaRouter:
    """The service's Kafka subscribers, for one broker."""
    router = KafkaRouter()
    router.subscriber(topics.CARE_TEAMS, **consumer_options(IDENTITY))(on_care_teams)
    return router


http = APIRouter(prefix="/v1", tags=["drafts"])


class Draft(BaseModel):
    id: UUID
    renewal_id: UUID | None
    category: str
    subject: str
    body: str
    recipient_id: int | None
    station_number: str | None
    ehr: str | None
    updated_at: datetime


class Sent(BaseModel):
    message_id: str
    draft_id: UUID
    renewal_id: UUID | None
    recipient_id: int
    station_number: str
    ehr: str
    trace_id: str | None


class Problem(BaseModel):
    code: str
    message: str


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


SessionsDep = Annotated[Sessions, Depends(sessions_of)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such draft for this Veteran (SM904)."}}


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail={"code": "SM904", "message": "Draft not found."})


def _draft(row: storage.DraftRow) -> Draft:
    return Draft(
        id=UUID(row.id),
        renewal_id=UUID(row.renewal_id) if row.renewal_id else None,
        category=row.category,
        subject=row.subject,
        body=row.body,
        recipient_id=row.recipient_id,
        station_number=row.station_number,
        ehr=row.ehr,
        updated_at=row.updated_at,
    )


@http.get("/drafts/{draft_id}", response_model=Draft, responses=NOT_FOUND)
async def get_draft(draft_id: UUID, veteran_id: VeteranId, sessions: SessionsDep) -> Draft:
    """One of the calling Veteran's drafts."""
    async with sessions() as session:
        row = await storage.draft_for_owner(session, draft_id, veteran_id)
    if row is None:
        raise _not_found()
    return _draft(row)


@http.get("/renewals/{renewal_id}/draft", response_model=Draft, responses=NOT_FOUND)
async def get_renewal_draft(
    renewal_id: UUID, veteran_id: VeteranId, sessions: SessionsDep
) -> Draft:
    """The prefilled draft of one of the calling Veteran's renewals."""
    async with sessions() as session:
        row = await storage.draft_for_renewal(session, renewal_id)
    if row is None or row.veteran_id != veteran_id:
        raise _not_found()
    return _draft(row)


@http.post(
    "/drafts/{draft_id}/send",
    response_model=Sent,
    responses={**NOT_FOUND, 422: {"model": Problem, "description": "The draft can't be sent."}},
)
async def send_draft(
    draft_id: UUID, veteran_id: VeteranId, request: Request, sessions: SessionsDep
) -> Sent | JSONResponse:
    """Send the draft to its care team; sending the same draft again returns the same message."""
    annotate("message.send")
    upstream: SecureMessaging = request.app.state.upstream
    publish: Publish = request.app.state.publish
    try:
        sent = await handlers.send_draft(draft_id, veteran_id, sessions, upstream, publish)
    except handlers.DraftNotFound:
        raise _not_found() from None
    except domain.SmError as error:
        log.info("send refused", step="message.send", code=error.code)
        return JSONResponse(
            status_code=error.status, content={"code": error.code, "message": error.message}
        )
    annotate("message.send", renewal_id=sent.renewal_id, ehr=sent.ehr)
    log.info("message sent", step="message.send", renewal_id=str(sent.renewal_id))
    return Sent(
        message_id=sent.message_id,
        draft_id=sent.draft_id,
        renewal_id=sent.renewal_id,
        recipient_id=sent.recipient_id,
        station_number=sent.station_number,
        ehr=sent.ehr.value,
        trace_id=current_trace_id(),
    )
