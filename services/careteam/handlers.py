"""Use cases of the care-team service."""

from plumbing.publishing import Publish
from schemas.events import CareTeamsResolved, CareTeamUnavailable, RenewalRequested
from services.careteam.adapters.directory import CareTeamDirectory
from services.careteam.domain import NoCareTeam, resolve


async def resolve_for_renewal(
    event: RenewalRequested, directory: CareTeamDirectory, publish: Publish
) -> CareTeamsResolved | CareTeamUnavailable:
    """Publish the Veteran's candidate care teams for the renewal, or why there are none."""
    groups = await directory.triage_groups(event.veteran_id)
    outcome: CareTeamsResolved | CareTeamUnavailable
    try:
        resolution = resolve(groups, event.prescription.stationNumber)
    except NoCareTeam as none:
        outcome = CareTeamUnavailable(
            renewal_id=event.renewal_id,
            veteran_id=event.veteran_id,
            ehr=event.ehr,
            reason=none.reason,
        )
    else:
        outcome = CareTeamsResolved(
            renewal_id=event.renewal_id,
            veteran_id=event.veteran_id,
            ehr=event.ehr,
            prescription=event.prescription,
            care_systems=resolution.care_systems,
            suggested_team_id=resolution.suggested_team_id,
            picker=resolution.picker,
        )
    await publish(outcome)
    return outcome
