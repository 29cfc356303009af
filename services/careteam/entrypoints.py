"""How events reach the care-team service."""

from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter

from plumbing.broker import consumer_options
from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.publishing import Publish
from plumbing.telemetry import annotate
from schemas import topics
from schemas.events import RenewalRequested
from schemas.vocabulary import Tool
from services.careteam import handlers
from services.careteam.adapters.directory import CareTeamDirectory

IDENTITY = ServiceIdentity("careteam", Tool.SM)
log = get_logger(IDENTITY)


async def on_renewal_requested(
    event: RenewalRequested,
    directory: Annotated[CareTeamDirectory, Context("directory")],
    publish: Annotated[Publish, Context("publish")],
) -> None:
    annotate("careteam.resolve", renewal_id=event.renewal_id, ehr=event.ehr)
    outcome = await handlers.resolve_for_renewal(event, directory, publish)
    log.info(
        "care teams resolved" if outcome.event_type == "careteams.resolved" else "no care team",
        step="careteam.resolve",
        renewal_id=str(event.renewal_id),
        outcome=outcome.event_type,
    )


def subscribers() -> KafkaRouter:
    """The service's Kafka subscribers, for one broker."""
    router = KafkaRouter()
    router.subscriber(topics.RENEWAL_REQUESTED, **consumer_options(IDENTITY))(on_renewal_requested)
    return router
