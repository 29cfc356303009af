"""Care-team resolution rules (domain.md section 3), over hand-made SM records."""

from dataclasses import replace
from datetime import date, timedelta

import pytest

from schemas.records import Prescription
from schemas.vocabulary import Ehr, PickerKind, UnavailableReason
from services.careteam.domain import (
    NoCareTeam,
    SentMessage,
    TriageGroup,
    VeteranCareTeams,
    is_allowed,
    months_before,
    options,
    picker_for,
    resolve,
)

TODAY = date(2026, 11, 23)

SYSTEMS = {
    "442": "VA Cheyenne health care",
    "528A7": "VA New York state health care",
    "528A8": "VA New York state health care",
    "554": "VA Eastern Colorado health care",
    "612A4": "VA Northern California health care",
    "640": "VA Palo Alto health care",
    "662": "VA San Francisco health care",
    "668": "VA Spokane health care",
    "757": "VA Central Ohio health care",
}


def team(team_id: int, station: str = "442", **changes: object) -> TriageGroup:
    group = TriageGroup(
        triage_team_id=team_id,
        name=f"TEAM {team_id}",
        station_number=station,
        care_system_name=SYSTEMS[station],
        preferred_team=True,
        oh_triage_group=station in {"668", "757"},
    )
    return replace(group, **changes)  # type: ignore[arg-type]


def veteran(
    *groups: TriageGroup,
    sent: tuple[SentMessage, ...] = (),
    phases: dict[str, str] | None = None,
    associated: int | None = None,
) -> VeteranCareTeams:
    return VeteranCareTeams(
        groups=groups,
        associated_triage_groups=len(groups) if associated is None else associated,
        migration_phases=phases or {},
        sent=sent,
    )


def rx(
    station: str | None = "442", first: str | None = None, last: str | None = None
) -> Prescription:
    return Prescription(
        prescriptionId="1", stationNumber=station, providerFirstName=first, providerLastName=last
    )


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


@pytest.mark.parametrize(
    ("blocked", "preferred", "migrating", "allowed"),
    [
        (False, True, False, True),
        (True, True, False, False),
        (False, False, False, False),
        (False, True, True, False),
        (True, False, True, False),
    ],
    ids=["allowed", "blocked", "not preferred", "migrating to OH", "all three"],
)
def test_a_team_is_allowed_only_when_preferred_and_not_blocked(
    blocked: bool, preferred: bool, migrating: bool, allowed: bool
) -> None:
    group = team(1, blocked_status=blocked, preferred_team=preferred, migrating_to_oh=migrating)
    assert is_allowed(group, {}) is allowed


@pytest.mark.parametrize(
    ("phase", "blocked"),
    [
        ("p0", False),
        ("p1", False),
        ("p2", False),
        ("p3", True),
        ("p4", True),
        ("p5", True),
        ("p6", True),
        ("p7", False),
    ],
)
@pytest.mark.parametrize("scheduled_at", ["612A4", "612"], ids=["facility", "parent station"])
def test_teams_are_blocked_in_migration_phases_p3_to_p6(
    phase: str, blocked: bool, scheduled_at: str
) -> None:
    assert is_allowed(team(1, "612A4"), {scheduled_at: phase}) is not blocked


@pytest.mark.parametrize(
    ("systems", "picker"),
    [
        (1, PickerKind.AUTO),
        (2, PickerKind.RADIO),
        (5, PickerKind.RADIO),
        (6, PickerKind.DROPDOWN),
        (9, PickerKind.DROPDOWN),
    ],
)
def test_the_picker_kind_follows_the_number_of_care_systems(
    systems: int, picker: PickerKind
) -> None:
    assert picker_for(systems) is picker


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 23), 6, date(2026, 5, 23)),
        (date(2026, 3, 15), 6, date(2025, 9, 15)),
        (date(2026, 8, 31), 6, date(2026, 2, 28)),
        (date(2024, 8, 31), 6, date(2024, 2, 29)),
        (date(2026, 12, 31), 6, date(2026, 6, 30)),
    ],
)
def test_six_months_ago_is_counted_in_calendar_months(
    day: date, months: int, expected: date
) -> None:
    assert months_before(day, months) == expected


def test_vista_and_oracle_health_records_become_one_care_team_model() -> None:
    vista = team(1, "442", suggested_name_display="Primary care - Red team", team_name="RED")
    oracle = team(2, "668", name="SPO Pharmacy")
    found = options(veteran(vista, oracle), oh_pilot=True, today=TODAY)
    teams = {t.triageTeamId: t for system in found.care_systems for t in system.teams}

    assert teams[1].ehr is Ehr.VISTA
    assert teams[1].displayName == "Primary care - Red team"
    assert teams[1].name == "TEAM 1"
    assert teams[1].teamName == "RED"
    assert (teams[1].stationNumber, teams[1].careSystemName) == ("442", "VA Cheyenne health care")
    assert teams[2].ehr is Ehr.ORACLE_HEALTH
    assert teams[2].displayName == "SPO Pharmacy", "without suggestedNameDisplay, the name"
    assert (teams[2].stationNumber, teams[2].careSystemName) == ("668", "VA Spokane health care")


def test_teams_are_grouped_by_care_system_and_several_stations_can_share_one() -> None:
    found = options(
        veteran(team(1, "528A7"), team(2, "528A8"), team(3, "442"), team(4, "668")),
        oh_pilot=True,
        today=TODAY,
    )
    systems = [(s.stationNumber, s.careSystemName, s.ehr) for s in found.care_systems]
    assert systems == [
        ("442", "VA Cheyenne health care", Ehr.VISTA),
        ("528", "VA New York state health care", Ehr.VISTA),
        ("668", "VA Spokane health care", Ehr.ORACLE_HEALTH),
    ]
    assert [t.triageTeamId for t in found.care_systems[1].teams] == [1, 2]
    assert found.picker is PickerKind.RADIO


def test_teams_within_a_care_system_are_in_display_name_order() -> None:
    found = options(
        veteran(
            team(1, suggested_name_display="Pharmacy"),
            team(2, suggested_name_display="mental health"),
            team(3, suggested_name_display="Primary care"),
        ),
        oh_pilot=False,
        today=TODAY,
    )
    assert [t.displayName for t in found.care_systems[0].teams] == [
        "mental health",
        "Pharmacy",
        "Primary care",
    ]


def test_oracle_health_teams_are_offered_only_when_the_pilot_is_on() -> None:
    mixed = veteran(team(1, "442"), team(2, "668"))

    on = options(mixed, oh_pilot=True, today=TODAY)
    off = options(mixed, oh_pilot=False, today=TODAY)

    assert [s.stationNumber for s in on.care_systems] == ["442", "668"]
    assert [s.stationNumber for s in off.care_systems] == ["442"]
    assert off.picker is PickerKind.AUTO


@pytest.mark.parametrize(
    ("directory", "pilot", "reason", "blocked_stations"),
    [
        (veteran(), False, UnavailableReason.NO_ASSOCIATIONS, []),
        (veteran(team(1), associated=0), False, UnavailableReason.NO_ASSOCIATIONS, []),
        (veteran(team(1, "668")), False, UnavailableReason.NO_ASSOCIATIONS, []),
        (
            veteran(team(1, preferred_team=False)),
            False,
            UnavailableReason.NO_ASSOCIATIONS,
            [],
        ),
        (
            veteran(team(1, "640", blocked_status=True), team(2, "612A4", blocked_status=True)),
            False,
            UnavailableReason.ALL_BLOCKED,
            ["612A4", "640"],
        ),
        (
            veteran(team(1, "554", blocked_status=True, migrating_to_oh=True)),
            False,
            UnavailableReason.FACILITY_MIGRATING,
            ["554"],
        ),
        (
            veteran(team(1, "554"), phases={"554": "p4"}),
            False,
            UnavailableReason.FACILITY_MIGRATING,
            ["554"],
        ),
        (
            veteran(team(1, "640", blocked_status=True), team(2, "668", blocked_status=True)),
            True,
            UnavailableReason.ALL_BLOCKED,
            ["640", "668"],
        ),
    ],
    ids=[
        "no records",
        "SM counts no associations",
        "Oracle Health only, pilot off",
        "nothing on the contact list",
        "every team blocked",
        "only facility migrating (SM's flag)",
        "only facility migrating (schedule)",
        "every team blocked across EHRs",
    ],
)
def test_why_a_veteran_has_no_care_team(
    directory: VeteranCareTeams,
    pilot: bool,
    reason: UnavailableReason,
    blocked_stations: list[str],
) -> None:
    with pytest.raises(NoCareTeam) as none:
        options(directory, oh_pilot=pilot, today=TODAY)
    assert none.value.reason is reason
    assert [f.stationNumber for f in none.value.blocked_facilities] == blocked_stations


def test_a_facility_whose_teams_are_all_blocked_is_reported_beside_the_allowed_ones() -> None:
    found = options(
        veteran(
            team(1, "442"),
            team(2, "640", blocked_status=True),
            team(3, "640", blocked_status=True),
            team(4, "554", blocked_status=True),
            team(5, "554"),
            team(6, "662", migrating_to_oh=True, blocked_status=True),
        ),
        oh_pilot=False,
        today=TODAY,
    )
    blocked = [
        (f.stationNumber, f.careSystemName, f.migratingToOh) for f in found.blocked_facilities
    ]
    assert blocked == [
        ("640", "VA Palo Alto health care", False),
        ("662", "VA San Francisco health care", True),
    ]
    assert [s.stationNumber for s in found.care_systems] == ["442", "554"]


def test_recent_teams_are_allowed_teams_messaged_in_the_last_six_months_newest_first() -> None:
    groups = [team(i, "442") for i in range(1, 8)] + [team(8, "442", blocked_status=True)]
    sent = (
        SentMessage(1, ago(3)),
        SentMessage(2, ago(10)),
        SentMessage(1, ago(20)),
        SentMessage(8, ago(1)),
        SentMessage(3, months_before(TODAY, 6)),
        SentMessage(4, months_before(TODAY, 6) - timedelta(days=1)),
        SentMessage(99, ago(2)),
        SentMessage(5, ago(100)),
        SentMessage(6, ago(150)),
    )
    found = options(veteran(*groups, sent=sent), oh_pilot=False, today=TODAY)
    assert [t.triageTeamId for t in found.recent_teams] == [1, 2, 5, 6]


def test_recent_teams_reach_back_exactly_six_months() -> None:
    sent = (
        SentMessage(3, months_before(TODAY, 6)),
        SentMessage(4, months_before(TODAY, 6) - timedelta(days=1)),
    )
    found = options(veteran(team(3), team(4), sent=sent), oh_pilot=False, today=TODAY)
    assert [t.triageTeamId for t in found.recent_teams] == [3]


def test_the_prescriptions_care_system_comes_first() -> None:
    directory = veteran(team(1, "442"), team(2, "554"), team(3, "662"))
    resolution = resolve(directory, rx("662"), oh_pilot=False, today=TODAY)
    assert [s.stationNumber for s in resolution.options.care_systems] == ["662", "442", "554"]


def test_a_prescription_at_a_division_finds_its_care_system() -> None:
    directory = veteran(team(1, "442"), team(2, "528A7"))
    resolution = resolve(directory, rx("528A8"), oh_pilot=False, today=TODAY)
    assert resolution.options.care_systems[0].stationNumber == "528"


PRESCRIBER = {"lead_provider_name": "Alvarez, Maria"}
PHARMACY = {"group_type": "PHARMACY"}


@pytest.mark.parametrize(
    ("groups", "sent", "prescription", "suggested", "basis"),
    [
        (
            [team(1, **PRESCRIBER), team(2, **PHARMACY), team(3)],
            [SentMessage(3, ago(30)), SentMessage(2, ago(60))],
            rx("442", "Maria", "Alvarez"),
            3,
            "recent_team",
        ),
        (
            [team(1, "442", **PRESCRIBER), team(2, "442", **PHARMACY), team(3, "554")],
            [SentMessage(3, ago(5))],
            rx("442", "MARIA", "ALVAREZ"),
            1,
            "prescriber_team",
        ),
        (
            [team(1, "442", lead_provider_name="Alvarez, Jose"), team(2, "442", **PHARMACY)],
            [SentMessage(1, ago(300))],
            rx("442", "Maria", "Alvarez"),
            2,
            "pharmacy",
        ),
        (
            [team(1, "528A7", **PHARMACY), team(2, "528A8", **PHARMACY)],
            [],
            rx("528A8"),
            2,
            "pharmacy",
        ),
        (
            [team(1, "442"), team(2, "554", **PHARMACY)],
            [SentMessage(2, ago(5))],
            rx("442", "Maria", "Alvarez"),
            None,
            None,
        ),
        ([team(1, "442", **PRESCRIBER)], [], rx(None, "Maria", "Alvarez"), None, None),
        (
            [team(1, "442", blocked_status=True, **PRESCRIBER), team(2, "554")],
            [SentMessage(1, ago(5))],
            rx("442", "Maria", "Alvarez"),
            None,
            None,
        ),
    ],
    ids=[
        "recent team at the facility",
        "the prescriber's team (a recent team elsewhere does not count)",
        "a pharmacy (another provider of the same surname is not the prescriber)",
        "the pharmacy at the prescription's own station first",
        "nothing at the facility: the Veteran picks",
        "no station on the prescription",
        "the facility's only team is blocked",
    ],
)
def test_the_suggested_team(
    groups: list[TriageGroup],
    sent: list[SentMessage],
    prescription: Prescription,
    suggested: int | None,
    basis: str | None,
) -> None:
    resolution = resolve(veteran(*groups, sent=tuple(sent)), prescription, False, TODAY)
    suggestion = resolution.suggestion
    assert (suggestion.team.triageTeamId if suggestion else None) == suggested
    assert (suggestion.basis if suggestion else None) == basis
