"""How requests reach the messaging service: care-team events from Kafka, the SM front end over HTTP.

Every HTTP call is the calling Veteran's (a bearer JWT): another Veteran's draft is not found (404).
Errors answer ``{"code", "message"}``: SM's codes (domain.md section 5) or a code naming what to fix.
"""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from faststream import Context
from faststream.kafka import KafkaRouter
from pydantic import BaseModel, ConfigDict, Field

from plumbing.auth import VeteranId
from plumbing.broker import consumer_options
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.telemetry import annotate, current_trace_id
from schemas import topics
from schemas.events import CareTeamsOutcome, CareTeamsResolved, Platform, TeamSelection
from schemas.records import CareSystem
from schemas.vocabulary import Category, Ehr, PickerKind, Tool
from services.messaging import handlers
from services.messaging.adapters.storage import DraftRow
from services.messaging.domain import DraftEdit, SmError
from services.messaging.handlers import Messaging, NewMessage

IDENTITY = ServiceIdentity("messaging", Tool.SM)
log = get_logger(IDENTITY)


async def on_care_teams(
    event: CareTeamsOutcome, deps: Annotated[Messaging, Context("messaging")]
) -> None:
    """A resolved renewal gets its prefilled draft; "no care team" needs nothing from SM here."""
    if not isinstance(event, CareTeamsResolved):
        return
    annotate("draft.create", renewal_id=event.renewal_id, ehr=event.ehr)
    created = await handlers.create_renewal_draft(event, deps)
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
    category: Category
    subject: str
    body: str
    recipient_id: int | None
    station_number: str | None
    ehr: Ehr | None
    team_selection: TeamSelection | None
    platform: Platform | None
    updated_at: datetime


class CareTeamChoice(BaseModel):
    """The care teams a renewal may go to, grouped by care system, and how to offer them."""

    renewal_id: UUID
    draft_id: UUID
    picker: PickerKind | None
    suggested_team_id: int | None
    recipient_id: int | None
    care_systems: list[CareSystem]


class NewDraft(BaseModel):
    """A general new message: the team the Veteran picked and how, any SM category."""

    model_config = ConfigDict(extra="forbid")

    recipient_id: int
    team_selection: TeamSelection
    category: Category
    subject: str
    body: str
    platform: Platform | None = None


class DraftChanges(BaseModel):
    """What to change in a draft; fields left out stay as they are. A new ``recipient_id`` needs
    ``team_selection`` (how it was chosen). A renewal's category stays MEDICATIONS."""

    model_config = ConfigDict(extra="forbid")

    recipient_id: int | None = None
    team_selection: TeamSelection | None = None
    category: Category | None = None
    subject: str | None = None
    body: str | None = None
    platform: Platform | None = None


class SendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Platform | None = Field(default=None, description="Where the Veteran sends from.")


class Sent(BaseModel):
    message_id: str
    draft_id: UUID
    renewal_id: UUID | None
    recipient_id: int
    station_number: str
    ehr: Ehr
    trace_id: str | None


class Problem(BaseModel):
    code: str
    message: str


async def messaging(request: Request) -> Messaging:
    deps: Messaging = request.app.state.messaging
    return deps


Deps = Annotated[Messaging, Depends(messaging)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such draft for this Veteran (SM904)."}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "What to fix: SM119, SM151, subject, body, ..."},
    503: {"model": Problem, "description": "SM is unavailable (SM901)."},
}
SEND_FAILED: dict[int | str, dict[str, Any]] = {
    502: {"model": Problem, "description": "SM failed the message (SM98 for Oracle Health)."},
    503: {"model": Problem, "description": "SM unavailable or unconfirmed (SM901, SM903)."},
}


async def sm_error_response(_: Request, error: Exception) -> JSONResponse:
    """An ``SmError`` as its HTTP status and ``{"code", "message"}``."""
    assert isinstance(error, SmError)
    log.info("request refused", code=error.code, status=error.status)
    return JSONResponse(
        status_code=error.status, content={"code": error.code, "message": error.message}
    )


def _draft(row: DraftRow) -> Draft:
    content = row.content()
    return Draft(
        id=UUID(row.id),
        renewal_id=UUID(row.renewal_id) if row.renewal_id else None,
        category=content.category,
        subject=content.subject,
        body=content.body,
        recipient_id=content.recipient_id,
        station_number=content.station_number,
        ehr=content.ehr,
        team_selection=content.team_selection,
        platform=content.platform,
        updated_at=row.updated_at,
    )


@http.post(
    "/drafts", status_code=201, response_model=Draft, responses=REFUSED, tags=["new message"]
)
async def start_message(new: NewDraft, veteran_id: VeteranId, deps: Deps) -> Draft:
    """Start a general new message to a care team the Veteran picked."""
    annotate("draft.create")
    draft = await handlers.start_message(
        veteran_id,
        NewMessage(
            recipient_id=new.recipient_id,
            team_selection=new.team_selection,
            category=new.category,
            subject=new.subject,
            body=new.body,
            platform=new.platform,
        ),
        deps,
    )
    annotate("draft.create", ehr=draft.ehr)
    log.info("draft created", step="draft.create", draft_id=draft.id, ehr=draft.ehr)
    return _draft(draft)


@http.get("/drafts/{draft_id}", response_model=Draft, responses=NOT_FOUND)
async def get_draft(draft_id: UUID, veteran_id: VeteranId, deps: Deps) -> Draft:
    """One of the calling Veteran's drafts."""
    return _draft(await handlers.get_draft(draft_id, veteran_id, deps))


@http.put(
    "/drafts/{draft_id}",
    response_model=Draft,
    responses={
        **NOT_FOUND,
        **REFUSED,
        409: {"model": Problem, "description": "Its send is under way (send_pending)."},
    },
)
async def edit_draft(
    draft_id: UUID, changes: DraftChanges, veteran_id: VeteranId, deps: Deps
) -> Draft:
    """Change the draft's care team, subject or body (auto-save)."""
    edit = DraftEdit(**changes.model_dump())
    draft = await handlers.edit_draft(draft_id, veteran_id, edit, deps)
    annotate("draft.update", renewal_id=draft.renewal_id, ehr=draft.ehr)
    log.info("draft updated", step="draft.update", draft_id=draft.id, renewal_id=draft.renewal_id)
    return _draft(draft)


@http.delete("/drafts/{draft_id}", status_code=204, responses=NOT_FOUND)
async def delete_draft(draft_id: UUID, veteran_id: VeteranId, deps: Deps) -> Response:
    """Delete the draft; it is gone for good."""
    await handlers.delete_draft(draft_id, veteran_id, deps)
    annotate("draft.delete")
    log.info("draft deleted", step="draft.delete", draft_id=str(draft_id))
    return Response(status_code=204)


@http.get("/renewals/{renewal_id}/draft", response_model=Draft, responses=NOT_FOUND)
async def get_renewal_draft(renewal_id: UUID, veteran_id: VeteranId, deps: Deps) -> Draft:
    """The prefilled draft of one of the calling Veteran's renewals."""
    return _draft(await handlers.get_renewal_draft(renewal_id, veteran_id, deps))


@http.get("/renewals/{renewal_id}/care-teams", response_model=CareTeamChoice, responses=NOT_FOUND)
async def get_renewal_care_teams(
    renewal_id: UUID, veteran_id: VeteranId, deps: Deps
) -> CareTeamChoice:
    """The care teams the renewal draft may be addressed to, grouped by care system."""
    draft = await handlers.get_renewal_draft(renewal_id, veteran_id, deps)
    return CareTeamChoice(
        renewal_id=renewal_id,
        draft_id=UUID(draft.id),
        picker=draft.picker_kind,
        suggested_team_id=draft.suggested_team_id,
        recipient_id=draft.recipient_id,
        care_systems=draft.candidates(),
    )


@http.post(
    "/drafts/{draft_id}/send",
    response_model=Sent,
    responses={**NOT_FOUND, **REFUSED, **SEND_FAILED},
)
async def send_draft(
    draft_id: UUID, veteran_id: VeteranId, deps: Deps, options: SendOptions | None = None
) -> Sent:
    """Send the draft to its care team; sending the same draft again returns the same message."""
    annotate("message.send")
    try:
        sent = await handlers.send_draft(
            draft_id, veteran_id, options.platform if options else None, deps
        )
    except SmError as error:
        log.warning("send failed", step="message.send", code=error.code, draft_id=str(draft_id))
        raise
    annotate("message.send", renewal_id=sent.renewal_id, ehr=sent.ehr)
    log.info(
        "message sent",
        step="message.send",
        renewal_id=str(sent.renewal_id),
        draft_id=str(draft_id),
        ehr=sent.ehr.value,
    )
    return Sent(
        message_id=sent.message_id,
        draft_id=sent.draft_id,
        renewal_id=sent.renewal_id,
        recipient_id=sent.recipient_id,
        station_number=sent.station_number,
        ehr=sent.ehr,
        trace_id=current_trace_id(),
    )
