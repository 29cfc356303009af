"""The bundled demo directory: realistic SM records, and each demo Veteran's documented outcome."""

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from schemas.records import Prescription
from schemas.vocabulary import Ehr, PickerKind, UnavailableReason
from services.careteam.adapters.demo import DEMO_DIRECTORY, DemoDirectory
from services.careteam.domain import NoCareTeam, resolve

TODAY = date(2026, 11, 23)
VISTA_ONLY = "1012845331V153043"
OH_ONLY = "1013062086V794840"
MIXED = "1012667122V019349"
NO_ASSOCIATIONS = "1013599370V295311"
ALL_BLOCKED = "1012881470V086192"
MIGRATING = "1012830012V438560"
SEVEN_STATIONS = "1012853550V207686"

SM_FIELDS = {
    "triageTeamId",
    "name",
    "stationNumber",
    "blockedStatus",
    "preferredTeam",
    "relationType",
    "locationName",
    "leadProviderName",
    "teamName",
    "suggestedNameDisplay",
    "healthCareSystemName",
    "groupTypeEnumVal",
    "subGroupTypeEnumVal",
    "groupTypePatientDisplay",
    "subGroupTypePatientDisplay",
    "ohTriageGroup",
    "migratingToOh",
}
OH_STATIONS = {"463", "531", "648", "653", "663", "668", "687", "692", "757"}


def demo_veterans() -> dict[str, Any]:
    veterans: dict[str, Any] = json.loads(DEMO_DIRECTORY.read_text())["veterans"]
    return veterans


def records(veteran: dict[str, Any]) -> list[dict[str, Any]]:
    teams: list[dict[str, Any]] = veteran["allTriageTeams"][1]["triageTeam"]
    return teams


@pytest.mark.parametrize("veteran_id", list(demo_veterans()))
def test_every_demo_record_has_sms_fields_and_counts(veteran_id: str) -> None:
    veteran = demo_veterans()[veteran_id]
    meta, teams = veteran["allTriageTeams"][0], records(veteran)
    for record in teams:
        assert set(record) == SM_FIELDS
        assert record["ohTriageGroup"] is (record["stationNumber"][:3] in OH_STATIONS)
        assert record["relationType"] == "PATIENT"
    assert meta["associatedTriageGroups"] == len(teams)
    assert meta["associatedBlockedTriageGroups"] == sum(r["blockedStatus"] for r in teams)


def test_every_demo_veteran_is_documented() -> None:
    readme = (Path(DEMO_DIRECTORY).parent / "README.md").read_text()
    for veteran_id in demo_veterans():
        assert f"`{veteran_id}`" in readme


def rx(station: str, first: str | None = None, last: str | None = None) -> Prescription:
    return Prescription(
        prescriptionId="1", stationNumber=station, providerFirstName=first, providerLastName=last
    )


RESOLVED = [
    (
        VISTA_ONLY,
        rx("442", "Jane", "Smith"),
        False,
        PickerKind.AUTO,
        ["442"],
        1013155,
        "recent_team",
    ),
    (OH_ONLY, rx("668"), True, PickerKind.RADIO, ["668", "687"], 3066802, "pharmacy"),
    (
        MIXED,
        rx("554", "Maria", "Alvarez"),
        True,
        PickerKind.RADIO,
        ["554", "757"],
        1554001,
        "prescriber_team",
    ),
    (MIXED, rx("757"), True, PickerKind.RADIO, ["757", "554"], 3075701, "recent_team"),
    (
        MIXED,
        rx("554", "Maria", "Alvarez"),
        False,
        PickerKind.AUTO,
        ["554"],
        1554001,
        "prescriber_team",
    ),
    (MIXED, rx("757"), False, PickerKind.AUTO, ["554"], None, None),
    (
        SEVEN_STATIONS,
        rx("528A7"),
        False,
        PickerKind.DROPDOWN,
        ["528A7", "442", "554", "528A8", "612A4", "640", "662"],
        1528701,
        "recent_team",
    ),
    (
        SEVEN_STATIONS,
        rx("528A8"),
        False,
        PickerKind.DROPDOWN,
        ["528A8", "442", "554", "528A7", "612A4", "640", "662"],
        1528801,
        "pharmacy",
    ),
    (
        SEVEN_STATIONS,
        rx("663"),
        True,
        PickerKind.DROPDOWN,
        ["663", "442", "554", "528A7", "528A8", "612A4", "640", "662"],
        3066301,
        "recent_team",
    ),
]


@pytest.mark.parametrize(
    ("veteran_id", "prescription", "pilot", "picker", "systems", "suggested", "basis"),
    RESOLVED,
    ids=[
        "VistA only",
        "Oracle Health only, pilot on",
        "mixed, VistA prescription, pilot on",
        "mixed, Oracle Health prescription, pilot on",
        "mixed, VistA prescription, pilot off",
        "mixed, Oracle Health prescription, pilot off",
        "seven VistA stations, a prescription at 528A7",
        "seven VistA stations, a prescription at 528A8 (same system name, another care system)",
        "seven VistA stations and Oracle Health, pilot on",
    ],
)
async def test_a_demo_veterans_renewal_resolves_as_documented(
    veteran_id: str,
    prescription: Prescription,
    pilot: bool,
    picker: PickerKind,
    systems: list[str],
    suggested: int | None,
    basis: str | None,
) -> None:
    directory = await DemoDirectory(today=lambda: TODAY).care_teams(veteran_id)
    resolution = resolve(directory, prescription, pilot, TODAY)
    assert resolution.options.picker is picker
    assert [s.stationNumber for s in resolution.options.care_systems] == systems
    assert (resolution.suggestion.team.triageTeamId if resolution.suggestion else None) == suggested
    assert (resolution.suggestion.basis if resolution.suggestion else None) == basis


@pytest.mark.parametrize(
    ("veteran_id", "pilot", "reason", "blocked"),
    [
        (OH_ONLY, False, UnavailableReason.NO_ASSOCIATIONS, []),
        (NO_ASSOCIATIONS, True, UnavailableReason.NO_ASSOCIATIONS, []),
        ("1000000000V000000", True, UnavailableReason.NO_ASSOCIATIONS, []),
        (ALL_BLOCKED, True, UnavailableReason.ALL_BLOCKED, [("612A4", False), ("640", False)]),
        (MIGRATING, True, UnavailableReason.FACILITY_MIGRATING, [("515", True)]),
    ],
    ids=[
        "Oracle Health only, pilot off",
        "no associations",
        "not in the directory",
        "all blocked",
        "facility mid-migration",
    ],
)
async def test_a_demo_veteran_without_a_care_team_gets_the_documented_reason(
    veteran_id: str, pilot: bool, reason: UnavailableReason, blocked: list[tuple[str, bool]]
) -> None:
    directory = await DemoDirectory(today=lambda: TODAY).care_teams(veteran_id)
    with pytest.raises(NoCareTeam) as none:
        resolve(directory, rx("442"), pilot, TODAY)
    assert none.value.reason is reason
    assert [(f.stationNumber, f.migratingToOh) for f in none.value.blocked_facilities] == blocked


async def test_the_demo_veteran_with_many_teams_has_four_recent_ones_and_a_migrating_facility() -> (
    None
):
    directory = await DemoDirectory(today=lambda: TODAY).care_teams(SEVEN_STATIONS)

    off = resolve(directory, rx("442"), False, TODAY).options
    on = resolve(directory, rx("442"), True, TODAY).options

    assert [t.triageTeamId for t in off.recent_teams] == [1528701, 1554011, 1640011, 1662011]
    assert [t.triageTeamId for t in on.recent_teams] == [1528701, 1554011, 1640011, 3066301]
    assert on.recent_teams[-1].ehr is Ehr.ORACLE_HEALTH
    assert [(f.stationNumber, f.migratingToOh) for f in on.blocked_facilities] == [("506", True)]


async def test_demo_sent_messages_are_dated_from_today() -> None:
    directory = await DemoDirectory(today=lambda: TODAY).care_teams(VISTA_ONLY)
    assert sorted((m.recipient_id, (TODAY - m.sent_on).days) for m in directory.sent) == [
        (1013155, 21),
        (1013155, 250),
    ]
