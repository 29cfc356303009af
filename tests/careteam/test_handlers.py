"""The renewal use case: what is published for each kind of Veteran, and when the directory fails."""

from datetime import date
from uuid import uuid4

import pytest

from schemas.events import CareTeamsResolved, CareTeamUnavailable, Event, RenewalRequested
from schemas.records import Prescription
from schemas.vocabulary import Ehr, PickerKind, UnavailableReason
from services.careteam.adapters.demo import DemoDirectory
from services.careteam.adapters.directory import (
    BoundedDirectory,
    CareTeamDirectory,
    DirectoryBudget,
    DirectoryError,
)
from services.careteam.adapters.flags import SettingsOhPilot
from services.careteam.domain import VeteranCareTeams
from services.careteam.handlers import Dependencies, resolve_for_renewal

TODAY = date(2026, 11, 23)
VISTA_ONLY = "1012845331V153043"
OH_ONLY = "1013062086V794840"
ALL_BLOCKED = "1012881470V086192"


class Published(list[Event]):
    async def __call__(self, event: Event, /) -> None:
        self.append(event)


class FailingDirectory:
    def __init__(self, transient: bool) -> None:
        self.transient = transient
        self.calls = 0

    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        self.calls += 1
        raise DirectoryError("alltriageteams: answered 503", transient=self.transient)


def renewal(veteran_id: str, station: str, ehr: Ehr = Ehr.VISTA) -> RenewalRequested:
    return RenewalRequested(
        renewal_id=uuid4(),
        veteran_id=veteran_id,
        ehr=ehr,
        prescription=Prescription(prescriptionId="22001", stationNumber=station),
    )


def deps(
    directory: CareTeamDirectory | None = None,
    pilot: SettingsOhPilot | None = None,
    published: Published | None = None,
) -> Dependencies:
    return Dependencies(
        directory=directory or DemoDirectory(today=lambda: TODAY),
        oh_pilot=pilot or SettingsOhPilot(),
        publish=Published() if published is None else published,
    )


async def test_a_resolved_renewal_carries_the_teams_the_suggestion_and_the_prescription() -> None:
    event = renewal(VISTA_ONLY, "442")
    published = Published()

    outcome = await resolve_for_renewal(event, deps(published=published), TODAY)

    assert published == [outcome]
    assert isinstance(outcome, CareTeamsResolved)
    assert (outcome.renewal_id, outcome.veteran_id, outcome.ehr) == (
        event.renewal_id,
        VISTA_ONLY,
        Ehr.VISTA,
    )
    assert outcome.prescription == event.prescription
    assert [t.triageTeamId for s in outcome.care_systems for t in s.teams] == [1013155]
    assert (outcome.suggested_team_id, outcome.suggestion_basis) == (1013155, "recent_team")
    assert [t.triageTeamId for t in outcome.recent_teams] == [1013155]
    assert outcome.picker is PickerKind.AUTO


@pytest.mark.parametrize(
    ("pilot", "outcome_type", "systems"),
    [
        (SettingsOhPilot([OH_ONLY]), CareTeamsResolved, ["668", "687"]),
        (SettingsOhPilot(everyone=True), CareTeamsResolved, ["668", "687"]),
        (SettingsOhPilot(["1012845331V153043"]), CareTeamUnavailable, None),
        (SettingsOhPilot(), CareTeamUnavailable, None),
    ],
    ids=["allow-listed", "on for everyone", "another Veteran allow-listed", "off"],
)
async def test_oracle_health_teams_follow_the_veterans_pilot_flag(
    pilot: SettingsOhPilot, outcome_type: type, systems: list[str] | None
) -> None:
    outcome = await resolve_for_renewal(
        renewal(OH_ONLY, "668", Ehr.ORACLE_HEALTH), deps(pilot=pilot), TODAY
    )
    assert isinstance(outcome, outcome_type)
    if isinstance(outcome, CareTeamsResolved):
        assert [s.stationNumber for s in outcome.care_systems] == systems
        assert {s.ehr for s in outcome.care_systems} == {Ehr.ORACLE_HEALTH}
    else:
        assert outcome.reason is UnavailableReason.NO_ASSOCIATIONS


async def test_no_care_team_is_published_with_its_reason_and_the_blocked_facilities() -> None:
    published = Published()
    outcome = await resolve_for_renewal(
        renewal(ALL_BLOCKED, "640"), deps(published=published), TODAY
    )
    assert isinstance(outcome, CareTeamUnavailable)
    assert published == [outcome]
    assert outcome.reason is UnavailableReason.ALL_BLOCKED
    assert [f.stationNumber for f in outcome.blocked_facilities] == ["612A4", "640"]


@pytest.mark.parametrize(("transient", "calls"), [(True, 3), (False, 1)])
async def test_a_failing_directory_is_reported_as_a_directory_error(
    transient: bool, calls: int
) -> None:
    failing = FailingDirectory(transient)
    budget = DirectoryBudget(attempts=3, backoff_seconds=0, deadline_seconds=5)
    published = Published()
    used = deps(directory=BoundedDirectory(failing, budget), published=published)

    outcome = await resolve_for_renewal(renewal(VISTA_ONLY, "442"), used, TODAY)

    assert isinstance(outcome, CareTeamUnavailable)
    assert outcome.reason is UnavailableReason.DIRECTORY_ERROR
    assert published == [outcome]
    assert failing.calls == calls


async def test_a_redelivered_request_publishes_the_same_event_id() -> None:
    event = renewal(VISTA_ONLY, "442")
    first = await resolve_for_renewal(event, deps(), TODAY)
    again = await resolve_for_renewal(event, deps(), TODAY)
    other = await resolve_for_renewal(renewal(VISTA_ONLY, "442"), deps(), TODAY)
    assert first.event_id == again.event_id != other.event_id
