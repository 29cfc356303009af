"""How requests reach the renewal service: HTTP from the Medications app (and, later, Kafka)."""

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.publishing import Publish
from plumbing.telemetry import annotate, current_trace_id
from schemas.records import RenewalRequest
from schemas.vocabulary import Tool
from services.renewal import handlers

IDENTITY = ServiceIdentity("renewal", Tool.MEDS)
log = get_logger(IDENTITY)

http = APIRouter(prefix="/v1", tags=["renewals"])


class RenewalAccepted(BaseModel):
    renewal_id: UUID
    trace_id: str | None
    status: str = "requested"


class Refusal(BaseModel):
    code: str
    message: str


def publisher(request: Request) -> Publish:
    publish: Publish = request.app.state.publish
    return publish


@http.post(
    "/renewals",
    status_code=202,
    response_model=RenewalAccepted,
    responses={422: {"model": Refusal, "description": "Not renewable, or an invalid request."}},
)
async def post_renewal(
    body: RenewalRequest, publish: Annotated[Publish, Depends(publisher)]
) -> RenewalAccepted | JSONResponse:
    """Ask to renew a prescription; 202 with the renewal id once the request is on Kafka."""
    annotate("renewal.request")
    try:
        event = await handlers.request_renewal(body, publish, today=date.today())
    except handlers.NotRenewable as refusal:
        log.info("renewal refused", step="renewal.request", reason=refusal.reason)
        return JSONResponse(
            status_code=422, content={"code": refusal.reason, "message": refusal.message}
        )
    annotate("renewal.request", renewal_id=event.renewal_id, ehr=event.ehr)
    log.info("renewal requested", step="renewal.request", renewal_id=str(event.renewal_id))
    return RenewalAccepted(renewal_id=event.renewal_id, trace_id=current_trace_id())
