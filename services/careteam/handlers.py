"""Use cases of the care-team service: resolve a renewal's care teams, list a Veteran's options."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from uuid import UUID, uuid5

from plumbing.batches import Within
from plumbing.logs import get_logger
from plumbing.publishing import Publish
from schemas.events import CareTeamsResolved, CareTeamUnavailable, RenewalRequested
from schemas.records import BlockedFacility
from schemas.vocabulary import Cohort, UnavailableReason
from services.careteam import domain
from services.careteam.adapters.directory import CareTeamDirectory, DirectoryError
from services.careteam.adapters.flags import OhPilot
from services.careteam.config import IDENTITY

log = get_logger(IDENTITY)


@dataclass
class Dependencies:
    """What the use cases work with; the app builds one and hands it to every entrypoint."""

    directory: CareTeamDirectory
    oh_pilot: OhPilot
    publish: Publish


Outcome = CareTeamsResolved | CareTeamUnavailable


def outcome_id(event: RenewalRequested) -> UUID:
    """The same id for the outcome of every delivery of one request, so consumers drop repeats."""
    return uuid5(event.event_id, "careteams")


async def resolve_for_renewal(event: RenewalRequested, deps: Dependencies, today: date) -> Outcome:
    """Publish the Veteran's care teams for the renewal and a suggested team, or why there are none
    (``resolve``)."""
    outcome = await resolve(event, deps, today)
    await deps.publish(outcome)
    return outcome


async def resolve_for_renewals(
    events: Sequence[RenewalRequested], deps: Dependencies, today: date, within: Within
) -> list[Outcome]:
    """``resolve_for_renewal`` for a batch: the directory asked and the outcomes published
    together, the i-th in ``within(i)`` (its record's span current); returns once Kafka
    acknowledged every outcome, and fails if any failed (the batch is then taken one by one)."""

    async def one(index: int, event: RenewalRequested) -> Outcome:
        with within(index):
            outcome = await resolve(event, deps, today)
            await deps.publish(outcome)
            return outcome

    return list(await asyncio.gather(*(one(i, event) for i, event in enumerate(events))))


async def resolve(event: RenewalRequested, deps: Dependencies, today: date) -> Outcome:
    """The Veteran's care teams for the renewal and a suggested team, or why there are none.

    The OH pilot is evaluated once per renewal, here: the candidates published are the renewal's for
    good, so a later flag change never takes a team from a renewal already resolved. The outcome carries
    the journey's cohort from the request; a request without one (an older producer) gets the cohort of
    this evaluation.
    """
    pilot = deps.oh_pilot.is_on(event.veteran_id)
    cohort = event.cohort or domain.cohort_of(pilot)
    outcome: Outcome
    try:
        directory = await deps.directory.care_teams(event.veteran_id)
        resolution = domain.resolve(directory, event.prescription, pilot, today)
    except DirectoryError as error:
        log.warning(
            "care-team directory failed",
            step="careteam.resolve",
            renewal_id=str(event.renewal_id),
            error=str(error),
            transient=error.transient,
        )
        outcome = _unavailable(event, cohort, UnavailableReason.DIRECTORY_ERROR)
    except domain.NoCareTeam as none:
        outcome = _unavailable(event, cohort, none.reason, none.blocked_facilities)
    else:
        options, suggestion = resolution.options, resolution.suggestion
        outcome = CareTeamsResolved(
            event_id=outcome_id(event),
            renewal_id=event.renewal_id,
            cohort=cohort,
            veteran_id=event.veteran_id,
            ehr=event.ehr,
            prescription=event.prescription,
            care_systems=options.care_systems,
            suggested_team_id=suggestion.team.triageTeamId if suggestion else None,
            suggestion_basis=suggestion.basis if suggestion else None,
            picker=options.picker,
            recent_teams=options.recent_teams,
            blocked_facilities=options.blocked_facilities,
        )
    return outcome


def _unavailable(
    event: RenewalRequested,
    cohort: Cohort,
    reason: UnavailableReason,
    blocked_facilities: list[BlockedFacility] | None = None,
) -> CareTeamUnavailable:
    return CareTeamUnavailable(
        event_id=outcome_id(event),
        renewal_id=event.renewal_id,
        cohort=cohort,
        veteran_id=event.veteran_id,
        ehr=event.ehr,
        reason=reason,
        blocked_facilities=blocked_facilities or [],
    )


@dataclass(frozen=True)
class Listing:
    """A Veteran's options for a new message, and the rollout cohort they were listed in."""

    options: domain.CareTeamOptions
    cohort: Cohort


async def care_team_options(veteran_id: str, deps: Dependencies, today: date) -> Listing:
    """The Veteran's options for a new message. Raises ``NoCareTeam`` or ``DirectoryError``."""
    pilot = deps.oh_pilot.is_on(veteran_id)
    directory = await deps.directory.care_teams(veteran_id)
    return Listing(domain.options(directory, pilot, today), domain.cohort_of(pilot))
