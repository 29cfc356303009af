"""The renewal use case: what is published for each kind of Veteran, and when the directory fails."""

from datetime import date
from uuid import uuid4

import pytest

from schemas.events import CareTeamsResolved, CareTeamUnavailable, Event, RenewalRequested
from schemas.records import Prescription
from schemas.vocabulary import Cohort, Ehr, PickerKind, UnavailableReason
from services.careteam.adapters.demo import DemoDirectory
from services.careteam.adapters.directory import (
    BoundedDirectory,
    CareTeamDirectory,
    DirectoryBudget,
    DirectoryError,
)
from services.careteam.domain import VeteranCareTeams
from services.careteam.handlers import Dependencies, resolve_for_renewal

TODAY = date(2026, 11, 23)
VISTA_ONLY = "1012845331V153043"
OH_ONLY = "1013062086V794840"
ALL_BLOCKED = "1012881470V086192"


class Pilot:
    """The OH pilot on for the given Veterans; counts how often it is asked."""

    def __init__(self, *veterans: str) -> None:
        self.veterans = set(veterans)
        self.asked = 0

    def is_on(self, veteran_id: str) -> bool:
        self.asked += 1
        return veteran_id in self.veterans


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


def renewal(
    veteran_id: str, station: str, ehr: Ehr = Ehr.VISTA, cohort: Cohort | None = None
) -> RenewalRequested:
    return RenewalRequested(
        renewal_id=uuid4(),
        veteran_id=veteran_id,
        ehr=ehr,
        cohort=cohort,
        prescription=Prescription(prescriptionId="22001", stationNumber=station),
    )


def deps(
    directory: CareTeamDirectory | None = None,
    pilot: Pilot | None = None,
    published: Published | None = None,
) -> Dependencies:
    return Dependencies(
        directory=directory or DemoDirectory(today=lambda: TODAY),
        oh_pilot=pilot or Pilot(),
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
        (Pilot(OH_ONLY), CareTeamsResolved, ["668", "687"]),
        (Pilot(VISTA_ONLY), CareTeamUnavailable, None),
        (Pilot(), CareTeamUnavailable, None),
    ],
    ids=["on for the Veteran", "on for another Veteran", "off"],
)
async def test_oracle_health_teams_follow_the_veterans_pilot_flag(
    pilot: Pilot, outcome_type: type, systems: list[str] | None
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


@pytest.mark.parametrize("cohort", list(Cohort))
@pytest.mark.parametrize("pilot", [Pilot(OH_ONLY), Pilot()], ids=["pilot on", "pilot off"])
async def test_the_outcome_carries_the_journeys_cohort_from_the_request(
    cohort: Cohort, pilot: Pilot
) -> None:
    outcome = await resolve_for_renewal(
        renewal(OH_ONLY, "668", Ehr.ORACLE_HEALTH, cohort=cohort), deps(pilot=pilot), TODAY
    )
    assert outcome.cohort is cohort


@pytest.mark.parametrize(
    ("veteran_id", "pilot", "cohort"),
    [
        (OH_ONLY, Pilot(OH_ONLY), Cohort.NEW),
        (OH_ONLY, Pilot(), Cohort.BASE),
        (VISTA_ONLY, Pilot(VISTA_ONLY), Cohort.NEW),
        (VISTA_ONLY, Pilot(), Cohort.BASE),
    ],
    ids=["OH, pilot on", "OH, pilot off", "VistA, pilot on", "VistA, pilot off"],
)
async def test_a_request_without_a_cohort_gets_the_pilots(
    veteran_id: str, pilot: Pilot, cohort: Cohort
) -> None:
    outcome = await resolve_for_renewal(renewal(veteran_id, "442"), deps(pilot=pilot), TODAY)
    assert outcome.cohort is cohort


async def test_a_directory_error_still_carries_the_cohort() -> None:
    failing = BoundedDirectory(
        FailingDirectory(transient=False),
        DirectoryBudget(attempts=1, backoff_seconds=0, deadline_seconds=5),
    )
    outcome = await resolve_for_renewal(
        renewal(OH_ONLY, "668", Ehr.ORACLE_HEALTH), deps(failing, Pilot(OH_ONLY)), TODAY
    )
    assert isinstance(outcome, CareTeamUnavailable)
    assert (outcome.reason, outcome.cohort) == (UnavailableReason.DIRECTORY_ERROR, Cohort.NEW)


async def test_the_pilot_is_asked_once_per_renewal() -> None:
    pilot = Pilot(OH_ONLY)
    await resolve_for_renewal(renewal(OH_ONLY, "668", Ehr.ORACLE_HEALTH), deps(pilot=pilot), TODAY)
    assert pilot.asked == 1
