"""How requests reach the messaging service: care-team events from Kafka, the SM front end over HTTP.

Every HTTP call is the calling Veteran's (a bearer JWT): another Veteran's draft is not found (404).
Errors answer ``{"code", "message"}``: SM's codes (domain.md section 5) or a code naming what to fix.

Each call says on its span which step of which journey it is (``rxsm.step``, ``rxsm.renewal_id``,
``rxsm.ehr``); a call on an existing draft links its span to the span that created the draft, so the
Veteran's later edits and send join the renewal's trace. Drafts created, updated, deleted and messages
sent are counted by status, EHR and cohort, and timed.
"""

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaRouter
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from plumbing.auth import VeteranId
from plumbing.batches import Batch, Records
from plumbing.broker import subscribe
from plumbing.deadletter import Settlement
from plumbing.http import API_ERRORS, Problem, problem
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.openapi import link
from plumbing.telemetry import annotate, current_trace_id, record_failure
from schemas import topics
from schemas.events import (
    CareTeamsOutcome,
    CareTeamsResolved,
    CareTeamUnavailable,
    DraftCreated,
    Platform,
    TeamSelection,
)
from schemas.records import CareSystem
from schemas.vocabulary import Category, Cohort, Ehr, PickerKind, UnavailableReason
from services.messaging import handlers
from services.messaging.adapters.storage import DraftRow
from services.messaging.adapters.tracing import link_to
from services.messaging.domain import BODY_MAX_LENGTH, SUBJECT_MAX_LENGTH, DraftEdit, SmError
from services.messaging.handlers import Messaging, NewMessage
from services.messaging.settings import IDENTITY

log = get_logger(IDENTITY)

UNKNOWN = "unknown"
"""A metric label whose value the call never learnt (e.g. the EHR of a draft that does not exist)."""

Labels = dict[str, str]


def _labels(draft: DraftRow) -> Labels:
    return {"ehr": draft.ehr or UNKNOWN, "cohort": draft.cohort}


@contextmanager
def _measured(
    counter: Counter, ok: int, latency: Histogram, step: str, source: str = "http"
) -> Iterator[Labels]:
    """Count one call by status (``ok``, the refusal's HTTP status, or 500), EHR and cohort, and time
    it; the call fills in the EHR and cohort labels it yields as it learns them."""
    labels = {"ehr": UNKNOWN, "cohort": UNKNOWN}
    started = time.perf_counter()
    status = "500"
    try:
        yield labels
        status = str(ok)
    except SmError as error:
        status = str(error.status)
        raise
    finally:
        counted = {**labels, "status": status}
        counter.add(1, counted)
        latency.record(time.perf_counter() - started, {**counted, "step": step, "source": source})


@dataclass(frozen=True)
class Bound:
    """What the messaging subscribers work with, bound once when the app is made."""

    deps: Messaging
    metrics: ServiceMetrics
    tracing: TracerProvider
    settlement: Settlement


def on_care_teams(bound: Bound) -> Callable[[CareTeamsOutcome], Awaitable[None]]:
    deps, metrics = bound.deps, bound.metrics

    async def on_care_teams(event: CareTeamsOutcome) -> None:
        """A resolved renewal gets its prefilled draft; for "no care team" its reason is kept, so
        the Veteran asking for the draft is told why there is none. Takes the records of the retry
        topic; the topic itself comes in batches (``on_care_teams_batch``)."""
        if isinstance(event, CareTeamsResolved):
            _report_draft(event, await _create_draft(event, deps, metrics), metrics)
        else:
            await handlers.record_no_care_team(event, deps)
            _report_no_care_team(event)

    return on_care_teams


CARE_TEAMS_OUTCOME: TypeAdapter[CareTeamsOutcome] = TypeAdapter(CareTeamsOutcome)


def on_care_teams_batch(bound: Bound) -> Callable[[Records], Awaitable[None]]:
    """A batch of care-team outcomes: their drafts made in one transaction (and one commit of
    offsets); each record keeps its own span and fate (see plumbing.batches)."""
    deps, metrics = bound.deps, bound.metrics

    async def create_one(event: CareTeamsOutcome) -> DraftCreated | None:
        if not isinstance(event, CareTeamsResolved):
            await handlers.record_no_care_team(event, deps)
            return None
        return await _create_draft(event, deps, metrics)

    def report(event: CareTeamsOutcome, created: DraftCreated | None) -> None:
        if isinstance(event, CareTeamsResolved):
            _report_draft(event, created, metrics)
        else:
            _report_no_care_team(event)

    batch: Batch[CareTeamsOutcome, DraftCreated] = Batch(
        CARE_TEAMS_OUTCOME,
        "draft.create",
        bound.tracing,
        bound.settlement,
        process=lambda events, within: handlers.create_renewal_drafts(events, deps, within),
        process_one=create_one,
        report=report,
    )

    async def on_care_teams_batch(records: Records) -> None:
        await batch.consume(records)

    return on_care_teams_batch


async def _create_draft(
    event: CareTeamsResolved, deps: Messaging, metrics: ServiceMetrics
) -> DraftCreated | None:
    """Create the renewal's draft alone; a failure is counted and logged under SM's code, then
    raised for the consumer's retry policy."""
    annotate("draft.create", renewal_id=event.renewal_id, ehr=event.ehr)
    try:
        return await handlers.create_renewal_draft(event, deps)
    except Exception as error:
        code = error.code if isinstance(error, SmError) else "SM99"
        record_failure(type(error).__name__, IDENTITY.tool, code)
        labels = {"ehr": str(event.ehr), "cohort": str(event.cohort or UNKNOWN), "status": code}
        metrics.drafts_created.add(1, labels)
        log.warning(
            "draft not created", step="draft.create", renewal_id=str(event.renewal_id), code=code
        )
        raise


def _report_no_care_team(event: CareTeamUnavailable) -> None:
    annotate("draft.create", renewal_id=event.renewal_id, ehr=event.ehr)
    log.info(
        "no care team for the renewal: no draft",
        step="draft.create",
        renewal_id=str(event.renewal_id),
        reason=event.reason.value,
    )


def _report_draft(
    event: CareTeamsResolved, created: DraftCreated | None, metrics: ServiceMetrics
) -> None:
    """Label the current span, count the draft and its latency from the care-team outcome, log it."""
    step = "draft.create"
    annotate(step, renewal_id=event.renewal_id, ehr=event.ehr)
    if created is None:
        log.info("care teams already handled", step=step, renewal_id=str(event.renewal_id))
        return
    labels = {"ehr": str(event.ehr), "cohort": str(created.cohort)}
    metrics.drafts_created.add(1, {**labels, "status": "success"})
    metrics.draft_latency.record(
        (datetime.now(UTC) - event.occurred_at).total_seconds(),
        {**labels, "status": "success", "step": step, "source": "care_teams"},
    )
    log.info(
        "draft created", step=step, renewal_id=str(event.renewal_id), draft_id=str(created.draft_id)
    )


def subscribers(bound: Bound | None = None) -> KafkaRouter:
    """The service's Kafka subscribers, for one broker, with what they work with bound once
    (without it, for listing the topics only)."""
    bound = bound or Bound(
        cast(Messaging, None), cast(ServiceMetrics, None), TracerProvider(), cast(Settlement, None)
    )
    router = KafkaRouter()
    subscribe(
        router,
        topics.CARE_TEAMS,
        on_care_teams(bound),
        IDENTITY,
        batch_handler=on_care_teams_batch(bound),
    )
    return router


http = APIRouter(prefix="/v1", tags=["drafts"], responses=API_ERRORS)


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


SUBJECT_LIMITS: dict[str, Any] = {"minLength": 1, "maxLength": SUBJECT_MAX_LENGTH}
BODY_LIMITS: dict[str, Any] = {"minLength": 1, "maxLength": BODY_MAX_LENGTH}
"""The lengths the service takes (services/messaging/domain.py), documented; a subject or body
outside them, blank, or holding a control character is refused with 422 and its own code."""
SUBJECT = "Not blank; 50 characters at most (VA's compose form)."
BODY = "Not blank; 20,000 characters at most."


class NewDraft(BaseModel):
    """A general new message: the team the Veteran picked and how, any SM category."""

    model_config = ConfigDict(extra="forbid")

    recipient_id: int
    team_selection: TeamSelection
    category: Category
    subject: str = Field(description=SUBJECT, json_schema_extra=SUBJECT_LIMITS)
    body: str = Field(description=BODY, json_schema_extra=BODY_LIMITS)
    platform: Platform | None = None


class DraftChanges(BaseModel):
    """What to change in a draft; fields left out stay as they are. A new ``recipient_id`` needs
    ``team_selection`` (how it was chosen). A renewal's category stays MEDICATIONS."""

    model_config = ConfigDict(extra="forbid")

    recipient_id: int | None = None
    team_selection: TeamSelection | None = None
    category: Category | None = None
    subject: str | None = Field(default=None, description=SUBJECT, json_schema_extra=SUBJECT_LIMITS)
    body: str | None = Field(default=None, description=BODY, json_schema_extra=BODY_LIMITS)
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


async def messaging(request: Request) -> Messaging:
    deps: Messaging = request.app.state.messaging
    return deps


async def service_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


Deps = Annotated[Messaging, Depends(messaging)]
Metrics = Annotated[ServiceMetrics, Depends(service_metrics)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such draft for this Veteran (draft_not_found)."}
}


class NoCareTeam(Problem):
    reason: UnavailableReason | None = Field(
        default=None,
        description="``care_team_unavailable``: why no care team could receive the renewal.",
    )


RENEWAL_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": NoCareTeam,
        "description": "``draft_not_found``: no draft (yet) for this Veteran's renewal; "
        "``care_team_unavailable``: there never will be, no care team could receive the renewal "
        "(``reason``: no_associations, all_blocked, facility_migrating, directory_error).",
    }
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem,
        "description": "What to fix: SM119, SM151, subject_too_long, body_too_long, "
        "invalid_character (naming the field and the character), ...",
    },
    503: {"model": Problem, "description": "SM is unavailable (SM901)."},
}
SEND_FAILED: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Oracle Health failed the message (SM98)."},
    502: {"model": Problem, "description": "SM failed the request (SM99)."},
    503: {"model": Problem, "description": "SM unavailable (SM900 to SM903)."},
    504: {"model": Problem, "description": "Oracle Health status unconfirmed (oh_send_timeout)."},
}

DRAFT_PATH = "/v1/drafts/{draft_id}"


def then(status: int, draft_id: str = "$response.body#/id") -> dict[int | str, dict[str, Any]]:
    """OpenAPI links of the ``status`` answer: what a client does next with the draft it names."""
    links = {
        "GetDraft": link("GET", DRAFT_PATH, "Read the draft.", draft_id=draft_id),
        "EditDraft": link(
            "PUT", DRAFT_PATH, "Change its care team, subject or body.", draft_id=draft_id
        ),
        "DeleteDraft": link("DELETE", DRAFT_PATH, "Delete it.", draft_id=draft_id),
        "SendDraft": link("POST", f"{DRAFT_PATH}/send", "Send it.", draft_id=draft_id),
    }
    return {status: {"links": links}}


RENEWAL_LINKS = {
    "GetRenewalDraft": link(
        "GET",
        "/v1/renewals/{renewal_id}/draft",
        "The renewal's prefilled draft.",
        renewal_id="$response.body#/renewal_id",
    ),
    "GetRenewalCareTeams": link(
        "GET",
        "/v1/renewals/{renewal_id}/care-teams",
        "The care teams the renewal's draft may go to.",
        renewal_id="$response.body#/renewal_id",
    ),
}


async def sm_error_response(_: Request, error: Exception) -> JSONResponse:
    """An ``SmError`` as its HTTP status and ``{"code", "message"}``; the span says it failed."""
    assert isinstance(error, SmError)
    record_failure(error.error_type, IDENTITY.tool, error.code)
    log.info("request refused", code=error.code, status=error.status, field=error.field)
    extra: dict[str, Any] = dict(error.details)
    if error.field is not None:
        extra["errors"] = [{"field": error.field, "problem": error.message}]
    return problem(error.status, error.code, error.message, **extra)


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


async def _journey(step: str, draft_id: UUID, veteran_id: str, deps: Messaging) -> Labels:
    """Name ``step`` and the draft's journey on the current span, link the span to the one that
    created the draft, and return the draft's metric labels (nothing when there is no such draft)."""
    draft = await handlers.find_draft(draft_id, veteran_id, deps)
    if draft is None:
        annotate(step)
        return {}
    annotate(step, renewal_id=draft.renewal_id, ehr=draft.ehr)
    link_to(draft.traceparent, "draft.create")
    return _labels(draft)


@http.post(
    "/drafts",
    status_code=201,
    response_model=Draft,
    responses={**REFUSED, **then(201)},
    tags=["new message"],
)
async def start_message(
    new: NewDraft, veteran_id: VeteranId, deps: Deps, metrics: Metrics
) -> Draft:
    """Start a general new message to a care team the Veteran picked, in the Veteran's cohort."""
    step = "draft.create"
    annotate(step)
    with _measured(metrics.drafts_created, 201, metrics.draft_latency, step) as labels:
        cohort = Cohort(deps.cohorts.cohort(veteran_id))
        labels["cohort"] = cohort.value
        draft = await handlers.start_message(
            veteran_id,
            NewMessage(
                recipient_id=new.recipient_id,
                team_selection=new.team_selection,
                category=new.category,
                subject=new.subject,
                body=new.body,
                platform=new.platform,
                cohort=cohort,
            ),
            deps,
        )
        labels.update(_labels(draft))
    annotate(step, ehr=draft.ehr)
    log.info("draft created", step=step, draft_id=draft.id, ehr=draft.ehr)
    return _draft(draft)


@http.get("/drafts/{draft_id}", response_model=Draft, responses={**NOT_FOUND, **then(200)})
async def get_draft(draft_id: UUID, veteran_id: VeteranId, deps: Deps) -> Draft:
    """One of the calling Veteran's drafts."""
    draft = await handlers.get_draft(draft_id, veteran_id, deps)
    annotate("draft.read", renewal_id=draft.renewal_id, ehr=draft.ehr)
    return _draft(draft)


@http.put(
    "/drafts/{draft_id}",
    response_model=Draft,
    responses={
        **NOT_FOUND,
        **REFUSED,
        409: {"model": Problem, "description": "Its send is under way (send_pending)."},
        **then(200),
    },
)
async def edit_draft(
    draft_id: UUID, changes: DraftChanges, veteran_id: VeteranId, deps: Deps, metrics: Metrics
) -> Draft:
    """Change the draft's care team, subject or body (auto-save)."""
    step = "draft.update"
    with _measured(metrics.drafts_updated, 200, metrics.draft_latency, step) as labels:
        labels.update(await _journey(step, draft_id, veteran_id, deps))
        edit = DraftEdit(**changes.model_dump())
        draft = await handlers.edit_draft(draft_id, veteran_id, edit, deps)
        labels.update(_labels(draft))
    annotate(step, renewal_id=draft.renewal_id, ehr=draft.ehr)
    log.info("draft updated", step=step, draft_id=draft.id, renewal_id=draft.renewal_id)
    return _draft(draft)


@http.delete("/drafts/{draft_id}", status_code=204, responses=NOT_FOUND)
async def delete_draft(
    draft_id: UUID, veteran_id: VeteranId, deps: Deps, metrics: Metrics
) -> Response:
    """Delete the draft; it is gone for good."""
    step = "draft.delete"
    with _measured(metrics.drafts_deleted, 204, metrics.draft_latency, step) as labels:
        labels.update(await _journey(step, draft_id, veteran_id, deps))
        await handlers.delete_draft(draft_id, veteran_id, deps)
    log.info("draft deleted", step=step, draft_id=str(draft_id))
    return Response(status_code=204)


@http.get(
    "/renewals/{renewal_id}/draft",
    response_model=Draft,
    responses={**RENEWAL_NOT_FOUND, 200: {"links": {**then(200)[200]["links"], **RENEWAL_LINKS}}},
)
async def get_renewal_draft(renewal_id: UUID, veteran_id: VeteranId, deps: Deps) -> Draft:
    """The prefilled draft of one of the calling Veteran's renewals; 404 ``care_team_unavailable``
    with the ``reason`` when no care team could receive the renewal."""
    annotate("draft.read", renewal_id=renewal_id)
    draft = await handlers.get_renewal_draft(renewal_id, veteran_id, deps)
    annotate("draft.read", ehr=draft.ehr)
    return _draft(draft)


@http.get(
    "/renewals/{renewal_id}/care-teams",
    response_model=CareTeamChoice,
    responses={
        **RENEWAL_NOT_FOUND,
        200: {"links": {**then(200, "$response.body#/draft_id")[200]["links"], **RENEWAL_LINKS}},
    },
)
async def get_renewal_care_teams(
    renewal_id: UUID, veteran_id: VeteranId, deps: Deps
) -> CareTeamChoice:
    """The care teams the renewal draft may be addressed to, grouped by care system."""
    annotate("draft.care_teams", renewal_id=renewal_id)
    draft = await handlers.get_renewal_draft(renewal_id, veteran_id, deps)
    annotate("draft.care_teams", ehr=draft.ehr)
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
    draft_id: UUID,
    veteran_id: VeteranId,
    deps: Deps,
    metrics: Metrics,
    options: SendOptions | None = None,
) -> Sent:
    """Send the draft to its care team; sending the same draft again returns the same message."""
    step = "message.send"
    with _measured(metrics.messages_sent, 200, metrics.send_latency, step) as labels:
        labels.update(await _journey(step, draft_id, veteran_id, deps))
        try:
            sent = await handlers.send_draft(
                draft_id, veteran_id, options.platform if options else None, deps
            )
        except SmError as error:
            log.warning("send failed", step=step, code=error.code, draft_id=str(draft_id))
            raise
        labels["ehr"] = sent.ehr.value
    annotate(step, renewal_id=sent.renewal_id, ehr=sent.ehr)
    log.info(
        "message sent",
        step=step,
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
