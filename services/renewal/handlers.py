"""Use cases of the renewal service."""

from datetime import date
from uuid import uuid4

from plumbing.publishing import Publish
from schemas.events import RenewalRequested
from schemas.records import RenewalRequest
from schemas.vocabulary import Ehr
from services.renewal.domain import check_renewal, ehr_of


class NotRenewable(Exception):
    """The prescription can't be renewed; ``reason`` is machine-readable, ``message`` for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


async def request_renewal(
    request: RenewalRequest, publish: Publish, today: date
) -> RenewalRequested:
    """Check the prescription and, when renewable, publish ``renewal requested``."""
    verdict = check_renewal(request.prescription, today)
    if not verdict.renewable:
        raise NotRenewable(verdict.reason or "not_renewable", verdict.message or "")
    event = RenewalRequested(
        renewal_id=uuid4(),
        veteran_id=request.veteranId,
        ehr=ehr_of(request.prescription, request.facilities),
        prescription=request.prescription,
        oh_stations=[f.stationNumber for f in request.facilities if f.ehr is Ehr.ORACLE_HEALTH],
        vista_stations=[f.stationNumber for f in request.facilities if f.ehr is Ehr.VISTA],
    )
    await publish(event)
    return event
