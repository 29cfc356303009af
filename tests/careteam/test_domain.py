"""Care-team resolution rules (domain.md section 3), over hand-made SM records.

Where a rule is VA's, the test names the VA file it follows:

- vets-api ``modules/my_health/app/helpers/my_health/facilities_helper.rb`` (FACILITIES_HELPER): station
  numbers normalised (``convert_prod_id``: 612 -> 612A4) and fixed system names (``COMPLICATED_SYSTEMS``,
  looked up by the normalised station).
- vets-api ``lib/sm/client/triage_teams.rb`` (TRIAGE_TEAMS): teams at a station in migration phase
  p3-p6 are blocked, the station matched exactly as SM sends it.
- vets-website ``src/applications/mhv-secure-messaging/util/helpers.js`` ``findBlockedFacilities``
  (HELPERS): every station of the answer is a facility; a station whose teams are all blocked is
  fully blocked.
- vets-website ``src/applications/mhv-secure-messaging/containers/SelectCareTeam.jsx`` (SELECT_CARE_TEAM):
  the care systems offered are every facility but the fully blocked ones; radio tiles when
  ``1 < count < MAX_RADIO_OPTIONS`` (6), a dropdown from 6 on.
- vets-website ``src/applications/mhv-secure-messaging/reducers/recipients.js`` (RECIPIENTS): allowed =
  ``blockedStatus === false && preferredTeam === true``; no associations when SM counts none or sends
  no record; all blocked when SM counts as many blocked teams as teams.
"""

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
    care_system_name,
    care_system_station,
    is_allowed,
    months_before,
    options,
    picker_for,
    resolve,
)

TODAY = date(2026, 11, 23)

FACILITIES_HELPER = "vets-api facilities_helper.rb"
TRIAGE_TEAMS = "vets-api lib/sm/client/triage_teams.rb"
HELPERS = "vets-website util/helpers.js findBlockedFacilities"
SELECT_CARE_TEAM = "vets-website containers/SelectCareTeam.jsx"
RECIPIENTS = "vets-website reducers/recipients.js"

SYSTEMS = {
    "442": "VA Cheyenne health care",
    "506": "VA Ann Arbor health care",
    "515": "VA Battle Creek health care",
    "528A7": "VA New York state health care",
    "528A8": "VA New York state health care",
    "612": "VA Northern California health care",
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
    associated_blocked: int | None = None,
) -> VeteranCareTeams:
    return VeteranCareTeams(
        groups=groups,
        associated_triage_groups=len(groups) if associated is None else associated,
        associated_blocked_triage_groups=associated_blocked,
        migration_phases=phases or {},
        sent=sent,
    )


def stations(*stations: str, **changes: object) -> list[TriageGroup]:
    """One allowed team at each station, ids from 1."""
    return [team(index, station, **changes) for index, station in enumerate(stations, start=1)]


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
def test_teams_are_blocked_in_migration_phases_p3_to_p6(phase: str, blocked: bool) -> None:
    """TRIAGE_TEAMS ``update_teams_migration_status``: p3, p4, p5 and p6 block the station's teams."""
    assert is_allowed(team(1, "612A4"), {"612A4": phase}) is not blocked


@pytest.mark.parametrize(
    ("sent_at", "scheduled_at", "blocked", "va_rule"),
    [
        ("612A4", "612A4", True, TRIAGE_TEAMS),
        ("612A4", "612", False, f"{TRIAGE_TEAMS}: phases_map[team.station_number], exact"),
        ("612", "612", True, f"{TRIAGE_TEAMS}: looked up before {FACILITIES_HELPER} renames 612"),
        (
            "612",
            "612A4",
            False,
            f"{TRIAGE_TEAMS}: looked up before {FACILITIES_HELPER} renames 612",
        ),
        ("528A7", "528", False, f"{TRIAGE_TEAMS}: phases_map[team.station_number], exact"),
    ],
)
def test_a_migration_schedule_blocks_the_station_exactly_as_sm_sends_it(
    sent_at: str, scheduled_at: str, blocked: bool, va_rule: str
) -> None:
    assert is_allowed(team(1, sent_at), {scheduled_at: "p4"}) is not blocked, va_rule


@pytest.mark.parametrize(
    ("systems", "picker", "va_rule"),
    [
        (1, PickerKind.AUTO, f"{SELECT_CARE_TEAM}: one care system is set on the draft, no picker"),
        (2, PickerKind.RADIO, f"{SELECT_CARE_TEAM}: length > 1 && length < MAX_RADIO_OPTIONS"),
        (5, PickerKind.RADIO, f"{SELECT_CARE_TEAM}: length > 1 && length < MAX_RADIO_OPTIONS"),
        (6, PickerKind.DROPDOWN, f"{SELECT_CARE_TEAM}: length >= MAX_RADIO_OPTIONS (6)"),
        (7, PickerKind.DROPDOWN, f"{SELECT_CARE_TEAM}: length >= MAX_RADIO_OPTIONS (6)"),
    ],
)
def test_the_picker_kind_follows_the_number_of_care_systems(
    systems: int, picker: PickerKind, va_rule: str
) -> None:
    assert picker_for(systems) is picker, va_rule


@pytest.mark.parametrize(
    ("sent", "station", "va_rule"),
    [
        ("612", "612A4", f"{FACILITIES_HELPER} convert_prod_id: 612 becomes 612A4"),
        ("612A4", "612A4", f"{FACILITIES_HELPER} convert_prod_id: only 612 is replaced"),
        ("528", "528", f"{FACILITIES_HELPER} convert_prod_id: only 612 is replaced"),
        ("528A7", "528A7", f"{FACILITIES_HELPER} convert_prod_id: a division keeps its number"),
        ("979", "979", f"{FACILITIES_HELPER} convert_non_prod_id: off api.va.gov only"),
        ("989", "989", f"{FACILITIES_HELPER} convert_non_prod_id: off api.va.gov only"),
        ("442", "442", f"{FACILITIES_HELPER} convert_prod_id: only 612 is replaced"),
    ],
)
def test_station_numbers_are_normalised_as_vets_api_does_in_production(
    sent: str, station: str, va_rule: str
) -> None:
    assert care_system_station(sent) == station, va_rule


NEW_YORK = "VA New York state health care (multiple facilities)"
NORTHERN_CALIFORNIA = "VA Northern California (multiple facilities)"


@pytest.mark.parametrize(
    ("station", "sm_name", "name", "va_rule"),
    [
        ("528", "doesnt matter", NEW_YORK, f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['528']"),
        (
            "589",
            None,
            "VA Kansas and Missouri health care (multiple facilities)",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['589']",
        ),
        (
            "620",
            "x",
            "VA Hudson Valley New York health care (multiple facilities)",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['620']",
        ),
        (
            "626",
            "x",
            "VA Tennessee health care (multiple facilities)",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['626']",
        ),
        (
            "636",
            "x",
            "VA Nebraska and Iowa health care (multiple facilities)",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['636']",
        ),
        (
            "657",
            "x",
            "VA Missouri and Illinois health care (multiple facilities)",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['657']",
        ),
        ("612", None, NORTHERN_CALIFORNIA, f"{FACILITIES_HELPER} 612 -> 612A4, then its name"),
        ("612A4", "x", NORTHERN_CALIFORNIA, f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS['612A4']"),
        (
            "528A7",
            "VA New York state health care",
            "VA New York state health care",
            f"{FACILITIES_HELPER} COMPLICATED_SYSTEMS is looked up by the exact station",
        ),
        (
            "442",
            "VA Cheyenne health care",
            "VA Cheyenne health care",
            f"{FACILITIES_HELPER}: `COMPLICATED_SYSTEMS[station] || team.health_care_system_name`",
        ),
        ("442", None, "442", f"{SELECT_CARE_TEAM}: the label falls back to the station number"),
        ("442", "", "442", f"{SELECT_CARE_TEAM}: the label falls back to the station number"),
    ],
)
def test_care_system_names_are_vets_apis_fixed_names_else_sms(
    station: str, sm_name: str | None, name: str, va_rule: str
) -> None:
    assert care_system_name(station, sm_name) == name, va_rule


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


@pytest.mark.parametrize(
    ("groups", "systems", "picker", "va_rule"),
    [
        (
            stations("528A7", "528A8"),
            [
                ("528A7", "VA New York state health care"),
                ("528A8", "VA New York state health care"),
            ],
            PickerKind.RADIO,
            f"{HELPERS}: facilities are stationNumbers, not names",
        ),
        (
            stations("612", "612A4"),
            [("612A4", NORTHERN_CALIFORNIA)],
            PickerKind.AUTO,
            f"{FACILITIES_HELPER}: 612 becomes 612A4, one station",
        ),
        (
            stations("442", "528A7", "528A8", "554", "612A4", "640"),
            [
                ("442", "VA Cheyenne health care"),
                ("554", "VA Eastern Colorado health care"),
                ("528A7", "VA New York state health care"),
                ("528A8", "VA New York state health care"),
                ("612A4", NORTHERN_CALIFORNIA),
                ("640", "VA Palo Alto health care"),
            ],
            PickerKind.DROPDOWN,
            f"{SELECT_CARE_TEAM}: six stations, five names, a dropdown",
        ),
    ],
    ids=["two divisions sharing a name", "612 and 612A4", "six stations, five names"],
)
def test_each_station_is_its_own_care_system_even_when_stations_share_a_name(
    groups: list[TriageGroup],
    systems: list[tuple[str, str]],
    picker: PickerKind,
    va_rule: str,
) -> None:
    found = options(veteran(*groups), oh_pilot=False, today=TODAY)
    assert [(s.stationNumber, s.careSystemName) for s in found.care_systems] == systems, va_rule
    assert found.picker is picker, va_rule
    assert sorted(t.triageTeamId for s in found.care_systems for t in s.teams) == [
        g.triage_team_id for g in groups
    ]


BLOCKED = {"blocked_status": True}


@pytest.mark.parametrize(
    ("groups", "systems", "blocked", "picker", "va_rule"),
    [
        (
            [team(1, "442"), team(2, "640", **BLOCKED), team(3, "640", **BLOCKED)],
            ["442"],
            ["640"],
            PickerKind.AUTO,
            f"{HELPERS}: 640 has no unblocked team; {SELECT_CARE_TEAM}: allFacilities minus it",
        ),
        (
            [team(1, "442"), team(2, "554", **BLOCKED), team(3, "554")],
            ["442", "554"],
            [],
            PickerKind.RADIO,
            f"{HELPERS}: one unblocked team keeps 554 a facility",
        ),
        (
            [*stations("442", "506", "528A7", "554", "612A4"), team(6, "640", **BLOCKED)],
            ["506", "442", "554", "528A7", "612A4"],
            ["640"],
            PickerKind.RADIO,
            f"{SELECT_CARE_TEAM}: six facilities less one fully blocked is five, radio tiles",
        ),
        (
            [*stations("442", "506", "528A7", "554", "612A4", "640"), team(7, "662", **BLOCKED)],
            ["506", "442", "554", "528A7", "612A4", "640"],
            ["662"],
            PickerKind.DROPDOWN,
            f"{SELECT_CARE_TEAM}: seven facilities less one fully blocked is six, a dropdown",
        ),
        (
            [team(1, "442"), team(2, "554", preferred_team=False)],
            ["442", "554"],
            [],
            PickerKind.RADIO,
            f"{HELPERS}: every station of the answer is a facility, on the contact list or not",
        ),
        (
            [team(1, "442"), team(2, "515")],
            ["442"],
            ["515"],
            PickerKind.AUTO,
            f"{TRIAGE_TEAMS}: a station in phase p3-p6 has its teams blocked",
        ),
    ],
    ids=[
        "a fully blocked station",
        "a partly blocked station",
        "six stations, one fully blocked",
        "seven stations, one fully blocked",
        "a station with no team on the contact list",
        "a station mid-migration",
    ],
)
def test_care_systems_are_every_station_but_the_fully_blocked_ones(
    groups: list[TriageGroup],
    systems: list[str],
    blocked: list[str],
    picker: PickerKind,
    va_rule: str,
) -> None:
    found = options(veteran(*groups, phases={"515": "p3"}), oh_pilot=False, today=TODAY)
    assert [s.stationNumber for s in found.care_systems] == systems, va_rule
    assert [f.stationNumber for f in found.blocked_facilities] == blocked, va_rule
    assert found.picker is picker, va_rule


def test_a_station_with_no_team_on_the_contact_list_offers_no_team() -> None:
    """Counted as a care system (HELPERS), but only allowed teams are offered (RECIPIENTS)."""
    found = options(
        veteran(team(1, "442"), team(2, "554", preferred_team=False)), oh_pilot=False, today=TODAY
    )
    assert {s.stationNumber: [t.triageTeamId for t in s.teams] for s in found.care_systems} == {
        "442": [1],
        "554": [],
    }


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
        (
            veteran(team(1, "640"), team(2, "442"), associated=2, associated_blocked=2),
            False,
            UnavailableReason.ALL_BLOCKED,
            [],
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
        "SM counts every team blocked (reducers/recipients.js allTriageGroupsBlocked)",
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


def test_a_prescription_at_612_belongs_to_the_care_system_612a4() -> None:
    """FACILITIES_HELPER: 612 is 612A4 on VA.gov."""
    directory = veteran(team(1, "442"), team(2, "612A4"))
    resolution = resolve(directory, rx("612"), oh_pilot=False, today=TODAY)
    assert resolution.options.care_systems[0].stationNumber == "612A4"


def test_a_prescription_at_another_division_of_a_station_finds_a_care_system_there() -> None:
    directory = veteran(team(1, "442"), team(2, "528A7"))
    resolution = resolve(directory, rx("528A8"), oh_pilot=False, today=TODAY)
    assert resolution.options.care_systems[0].stationNumber == "528A7"


def test_a_prescription_at_a_division_prefers_its_own_station() -> None:
    directory = veteran(team(1, "528A7"), team(2, "528A8"), team(3, "442"))
    resolution = resolve(directory, rx("528A8"), oh_pilot=False, today=TODAY)
    assert [s.stationNumber for s in resolution.options.care_systems] == ["528A8", "442", "528A7"]


def test_a_care_system_is_found_by_its_station_number_as_sm_sends_it() -> None:
    found = options(veteran(team(1, "612A4"), team(2, "528A7")), oh_pilot=False, today=TODAY)
    northern_california = found.care_system("612A4")
    assert northern_california is not None
    assert found.care_system("612") is northern_california
    assert found.care_system("528") is None, "528A7 is a care system of its own, 528 is not one"


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
