"""How requests reach the care-team service: renewals from Kafka, the SM front end over HTTP."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaRouter
from opentelemetry.sdk.trace import TracerProvider
from pydantic import AliasGenerator, BaseModel, ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

from plumbing.auth import VeteranId
from plumbing.batches import Batch, Records
from plumbing.broker import subscribe
from plumbing.deadletter import Settlement
from plumbing.http import API_ERRORS, Problem, problem
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.telemetry import annotate, record_failure
from schemas import topics
from schemas.events import CareTeamsResolved, RenewalRequested
from schemas.records import BlockedFacility, CareSystem, CareTeam
from schemas.vocabulary import Ehr, PickerKind, Tool, UnavailableReason
from services.careteam import domain, handlers
from services.careteam.adapters.directory import DirectoryError
from services.careteam.config import IDENTITY
from services.careteam.handlers import Dependencies

log = get_logger(IDENTITY)


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Bound:
    """What the care-team subscribers work with, bound once when the app is made."""

    deps: Dependencies
    metrics: ServiceMetrics
    tracing: TracerProvider
    settlement: Settlement


RENEWAL_REQUESTED: TypeAdapter[RenewalRequested] = TypeAdapter(RenewalRequested)


def on_renewal_requested(bound: Bound) -> Callable[[RenewalRequested], Awaitable[None]]:
    async def on_renewal_requested(event: RenewalRequested) -> None:
        """A renewal's care teams, alone (the records of the retry topic)."""
        annotate("careteam.resolve", renewal_id=event.renewal_id, ehr=event.ehr)
        outcome = await handlers.resolve_for_renewal(event, bound.deps, _today())
        _report(outcome, event, bound.metrics)

    return on_renewal_requested


def on_renewal_requests(bound: Bound) -> Callable[[Records], Awaitable[None]]:
    """A batch of renewals: their care teams resolved and published together, and one commit of
    offsets; each record keeps its own span and fate (plumbing.batches)."""

    def report(event: RenewalRequested, outcome: handlers.Outcome | None) -> None:
        annotate("careteam.resolve", renewal_id=event.renewal_id, ehr=event.ehr)
        if outcome is not None:
            _report(outcome, event, bound.metrics)

    batch: Batch[RenewalRequested, handlers.Outcome] = Batch(
        RENEWAL_REQUESTED,
        "careteam.resolve",
        bound.tracing,
        bound.settlement,
        process=lambda events, within: handlers.resolve_for_renewals(
            events, bound.deps, _today(), within
        ),
        process_one=lambda event: handlers.resolve_for_renewal(event, bound.deps, _today()),
        report=report,
    )

    async def on_renewal_requests(records: Records) -> None:
        await batch.consume(records)

    return on_renewal_requests


def _report(outcome: handlers.Outcome, event: RenewalRequested, metrics: ServiceMetrics) -> None:
    """Log the outcome (ids and counts only) and count it for the dashboard, by the outcome's cohort."""
    cohort = str(outcome.cohort)
    labels = {"tool": str(Tool.SM), "ehr": str(event.ehr), "cohort": cohort}
    if isinstance(outcome, CareTeamsResolved):
        metrics.renewals.add(1, {**labels, "step": "care_team_resolved", "outcome": "success"})
        metrics.picker_shown.add(
            1, {"kind": str(outcome.picker), "cohort": cohort, "flow": "renewal"}
        )
        log.info(
            "care teams resolved",
            step="careteam.resolve",
            renewal_id=str(event.renewal_id),
            care_systems=len(outcome.care_systems),
            picker=str(outcome.picker),
            suggestion_basis=outcome.suggestion_basis,
        )
        return
    reason = str(outcome.reason)
    record_failure("care_team_unavailable", Tool.SM, code=reason)
    metrics.renewals.add(
        1, {**labels, "step": "care_team_unavailable", "outcome": "failure", "reason": reason}
    )
    log.info(
        "no care team", step="careteam.resolve", renewal_id=str(event.renewal_id), reason=reason
    )


def subscribers(bound: Bound | None = None) -> KafkaRouter:
    """The service's Kafka subscribers, for one broker, with what they work with bound once
    (without it, for listing the topics only)."""
    bound = bound or Bound(
        cast(Dependencies, None),
        cast(ServiceMetrics, None),
        TracerProvider(),
        cast(Settlement, None),
    )
    router = KafkaRouter()
    subscribe(
        router,
        topics.RENEWAL_REQUESTED,
        on_renewal_requested(bound),
        IDENTITY,
        batch_handler=on_renewal_requests(bound),
    )
    return router


http = APIRouter(prefix="/v1", tags=["care teams"], responses=API_ERRORS)


class CareSystemChoice(BaseModel):
    """One care system the Veteran can pick, without its teams (ask with ``?care_system=``)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(serialization_alias=to_camel), serialize_by_alias=True
    )

    station_number: str
    care_system_name: str
    ehr: Ehr
    team_count: int


class CareTeamsView(BaseModel):
    """The Veteran's options for a new message: recent teams, care systems, and one system's teams."""

    recent_teams: list[CareTeam]
    care_systems: list[CareSystemChoice]
    picker: PickerKind | None
    blocked_facilities: list[BlockedFacility]
    care_system: CareSystem | None
    unavailable_reason: UnavailableReason | None


async def dependencies_of(request: Request) -> Dependencies:
    deps: Dependencies = request.app.state.careteam
    return deps


async def metrics_of(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


CARE_SYSTEM = Query(
    pattern=r"^\d{3}[A-Z0-9]{0,3}$",
    description="A care system's station number (e.g. 442): include that system's teams.",
)


@http.get(
    "/care-teams",
    response_model=CareTeamsView,
    responses={
        422: {"model": Problem, "description": "Not one of the Veteran's care systems."},
        503: {"model": Problem, "description": "The care-team directory did not answer."},
    },
)
async def get_care_teams(
    veteran_id: VeteranId,
    deps: Annotated[Dependencies, Depends(dependencies_of)],
    metrics: Annotated[ServiceMetrics, Depends(metrics_of)],
    care_system: Annotated[str | None, CARE_SYSTEM] = None,
) -> CareTeamsView | JSONResponse:
    """The calling Veteran's recent care teams (at most 4), care systems and picker kind."""
    annotate("careteam.list")
    try:
        listing = await handlers.care_team_options(veteran_id, deps, _today())
    except DirectoryError as error:
        log.warning("care-team directory failed", step="careteam.list", error=str(error))
        return _problem(
            503,
            "directory_unavailable",
            "The care-team directory did not answer. Try again in a few minutes.",
        )
    except domain.NoCareTeam as none:
        if care_system is not None:
            return _unknown_care_system(care_system, [])
        return CareTeamsView(
            recent_teams=[],
            care_systems=[],
            picker=None,
            blocked_facilities=none.blocked_facilities,
            care_system=None,
            unavailable_reason=none.reason,
        )
    found = listing.options
    chosen = found.care_system(care_system) if care_system is not None else None
    if care_system is not None and chosen is None:
        return _unknown_care_system(care_system, found.care_systems)
    if care_system is None:
        metrics.picker_shown.add(
            1, {"kind": str(found.picker), "cohort": str(listing.cohort), "flow": "new_message"}
        )
    return CareTeamsView(
        recent_teams=found.recent_teams,
        care_systems=[
            CareSystemChoice(
                station_number=system.stationNumber,
                care_system_name=system.careSystemName,
                ehr=system.ehr,
                team_count=len(system.teams),
            )
            for system in found.care_systems
        ],
        picker=found.picker,
        blocked_facilities=found.blocked_facilities,
        care_system=chosen,
        unavailable_reason=None,
    )


def _unknown_care_system(station: str, systems: list[CareSystem]) -> JSONResponse:
    yours = ", ".join(system.stationNumber for system in systems)
    hint = f"Choose one of: {yours}." if yours else "You have no care system to message."
    return _problem(
        422, "unknown_care_system", f"Care system {station} is not one of yours. {hint}"
    )


def _problem(status: int, code: str, message: str) -> JSONResponse:
    return problem(status, code, message)
