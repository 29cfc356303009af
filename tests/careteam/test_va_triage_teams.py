"""VA's own triage-team answers, read as the service reads them, decide what VA's code decides.

Each answer in ``tests/fixtures/va/triage_teams/`` (see its SOURCES) is served by a stub SM API to the
service's own directory adapter (``SmApiDirectory``: the HTTP answer, either shape, parsed into
``VeteranCareTeams``), then goes through ``domain.options`` / ``domain.resolve``. Every expected value
below is worked out by hand from VA's code, for that answer:

- vets-api ``modules/my_health/app/helpers/my_health/facilities_helper.rb`` (FACILITIES_HELPER), applied
  by ``all_triage_teams_controller.rb`` to every team: ``convert_prod_id`` turns station 612 into 612A4;
  ``COMPLICATED_SYSTEMS[station] || team.health_care_system_name`` names the system, the table keyed by
  528, 589, 620, 626, 636, 657, 612 and 612A4. ``convert_non_prod_id`` (979 -> 552, 989 -> 442) runs
  only off api.va.gov; rxsm follows production, so VA's test stations 979 and 989 stay as they are.
- vets-website ``src/applications/mhv-secure-messaging/util/helpers.js`` ``findBlockedFacilities``
  (HELPERS): ``allFacilities`` is every distinct ``stationNumber`` of the answer; a facility is fully
  blocked when it has a team with ``blockedStatus === true`` and none without.
- vets-website ``containers/SelectCareTeam.jsx`` (SELECT_CARE_TEAM): the care systems offered are
  ``allFacilities`` less the fully blocked ones, labelled by VA's facility data or else the station
  number (rxsm has no facility data: SM's ``healthCareSystemName`` stands in, else the station
  number); radio tiles when ``1 < n < MAX_RADIO_OPTIONS`` (6), a dropdown when ``n >= 6``, and for a
  single care system no picker (rxsm: ``auto``).
- vets-website ``reducers/recipients.js`` (RECIPIENTS): allowed teams are those with
  ``blockedStatus === false && preferredTeam === true``; ``noAssociations`` when
  ``associatedTriageGroups === 0`` or no record; ``allTriageGroupsBlocked`` when
  ``associatedTriageGroups === associatedBlockedTriageGroups``.
- vets-api ``lib/sm/client.rb`` ``append_requires_oh_messages_query``: Oracle Health teams are
  asked of SM only for a Veteran in the ``mhv_secure_messaging_cerner_pilot``; so an answer holding one
  is the answer of a Veteran in the pilot.

The answers are VA's test data; their team names are VA's, not a Veteran's.
"""

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.records import Prescription
from schemas.vocabulary import PickerKind, UnavailableReason
from services.careteam import domain
from services.careteam.adapters.sm_api import ALL_TRIAGE_TEAMS, SENT_FOLDER, SmApiDirectory
from services.careteam.domain import NoCareTeam, VeteranCareTeams
from services.messaging.adapters.upstream import recipients_from_sm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "va" / "triage_teams"
TODAY = date(2026, 11, 23)
VETERAN = "1000000000V000000"

FACILITIES_HELPER = "vets-api modules/my_health/app/helpers/my_health/facilities_helper.rb"
HELPERS = "vets-website src/applications/mhv-secure-messaging/util/helpers.js"
SELECT_CARE_TEAM = (
    "vets-website src/applications/mhv-secure-messaging/containers/SelectCareTeam.jsx"
)
RECIPIENTS = "vets-website src/applications/mhv-secure-messaging/reducers/recipients.js"

WICHITA = "VA Wichita Health Care"
NEW_YORK = "VA New York state health care (multiple facilities)"
KANSAS_MISSOURI = "VA Kansas and Missouri health care (multiple facilities)"
HUDSON_VALLEY = "VA Hudson Valley New York health care (multiple facilities)"
TENNESSEE = "VA Tennessee health care (multiple facilities)"
NEBRASKA_IOWA = "VA Nebraska and Iowa health care (multiple facilities)"
MISSOURI_ILLINOIS = "VA Missouri and Illinois health care (multiple facilities)"
NORTHERN_CALIFORNIA = "VA Northern California (multiple facilities)"


def answer(fixture: str) -> Any:
    return json.loads((FIXTURES / fixture).read_text())


async def care_teams(fixture: str) -> VeteranCareTeams:
    """The fixture as the service's SM API directory reads it over HTTP (no sent messages)."""

    def sm(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(ALL_TRIAGE_TEAMS):
            return httpx.Response(200, json=answer(fixture))
        if request.url.path.endswith(SENT_FOLDER):
            return httpx.Response(200, json=[])
        return httpx.Response(404)

    client = httpx.AsyncClient(base_url="http://sm.test/", transport=httpx.MockTransport(sm))
    async with client:
        return await SmApiDirectory(client).care_teams(VETERAN)


@dataclass(frozen=True)
class Offered:
    """What VA.gov offers for an answer: care systems (station -> label), picker, allowed teams."""

    fixture: str
    oh_pilot: bool
    systems: dict[str, str]
    picker: PickerKind
    allowed: set[int]
    blocked_facilities: list[str] = field(default_factory=list)
    why: str = ""


OFFERED = [
    Offered(
        "vets-api_complex_teams.json",
        False,
        {
            "979": WICHITA,
            "528": NEW_YORK,
            "589": KANSAS_MISSOURI,
            "620": HUDSON_VALLEY,
            "626": TENNESSEE,
            "636": NEBRASKA_IOWA,
            "657": MISSOURI_ILLINOIS,
            "612A4": NORTHERN_CALIFORNIA,
        },
        PickerKind.DROPDOWN,
        set(range(4399547, 4399555)),
        why=f"8 distinct stations ({HELPERS} allFacilities), 612 -> 612A4 and 7 fixed names "
        f"({FACILITIES_HELPER}), none blocked: 8 >= MAX_RADIO_OPTIONS ({SELECT_CARE_TEAM}); all 8 "
        f"unblocked and preferred ({RECIPIENTS}). Seven stations share the name 'doesnt matter' "
        "in SM's answer: they are still seven care systems.",
    ),
    Offered(
        "vets-api_vha_612.json",
        False,
        {"612A4": NORTHERN_CALIFORNIA},
        PickerKind.AUTO,
        {4399547},
        why=f"612 -> 612A4, named by COMPLICATED_SYSTEMS though SM sent no name "
        f"({FACILITIES_HELPER}); one care system ({SELECT_CARE_TEAM})",
    ),
    Offered(
        "vets-api_missing_system_names.json",
        False,
        {"979": "979"},
        PickerKind.AUTO,
        {4399547},
        why=f"no name from SM or {FACILITIES_HELPER}: labelled by the station number "
        f"({SELECT_CARE_TEAM}); one care system",
    ),
    Offered(
        "vets-api_include_blocked.json",
        False,
        {"979": WICHITA},
        PickerKind.AUTO,
        {4399547},
        why=f"979 has a blocked and an unblocked record, so it is not fully blocked ({HELPERS}); "
        f"the unblocked, preferred record is allowed ({RECIPIENTS}); SM counts 9 teams, 1 blocked: "
        "not all blocked",
    ),
    Offered(
        "vets-website_all-triage-teams-response.json",
        False,
        {"649": "649"},
        PickerKind.AUTO,
        {6832726, 6910405, 6978853, 6978854, 7123233, 56219},
        why=f"one station, 649, with one blocked team of seven: not fully blocked ({HELPERS}); "
        f"the six unblocked, preferred teams are allowed ({RECIPIENTS}); no name: the station "
        f"number ({SELECT_CARE_TEAM})",
    ),
    Offered(
        "vets-website_recipients-response.json",
        True,
        {"607": "607", "589": KANSAS_MISSOURI, "663": "663", "668": "668", "649": "649"},
        PickerKind.RADIO,
        {7026562, 6832726, 6910405, 6978853, 6978854, 7123233, 56219, 3658288, 3658299, 7654321},
        why=f"5 stations, none blocked: 1 < 5 < MAX_RADIO_OPTIONS ({SELECT_CARE_TEAM}); 589 has a "
        f"fixed name ({FACILITIES_HELPER}); the Oracle Health team at 668 is in the answer, so the "
        "Veteran is in the pilot (vets-api lib/sm/client.rb append_requires_oh_messages_query)",
    ),
    Offered(
        "vets-website_recipients-response.json",
        False,
        {"607": "607", "589": KANSAS_MISSOURI, "663": "663", "649": "649"},
        PickerKind.RADIO,
        {7026562, 6832726, 6910405, 6978853, 6978854, 7123233, 56219, 3658288, 7654321},
        why="outside the pilot vets-api does not ask SM for Oracle Health teams (vets-api "
        "lib/sm/client.rb append_requires_oh_messages_query): 668's team is not in VA's answer, "
        f"4 stations remain, radio tiles ({SELECT_CARE_TEAM})",
    ),
    Offered(
        "vets-website_facility-blocked-recipients-response.json",
        False,
        {"583": "583"},
        PickerKind.AUTO,
        {6978854, 7123233, 56219},
        blocked_facilities=["607"],
        why=f"607's four teams are all blocked: fully blocked ({HELPERS}) and not offered; 583 "
        f"alone remains ({SELECT_CARE_TEAM}: no picker); SM counts 7 teams, 4 blocked: not all "
        f"blocked ({RECIPIENTS})",
    ),
]


@pytest.mark.parametrize(
    "case",
    OFFERED,
    ids=[f"{case.fixture} pilot {'on' if case.oh_pilot else 'off'}" for case in OFFERED],
)
async def test_vas_answer_offers_the_care_systems_and_teams_va_offers(case: Offered) -> None:
    found = domain.options(await care_teams(case.fixture), case.oh_pilot, TODAY)

    systems = [(s.stationNumber, s.careSystemName) for s in found.care_systems]
    assert dict(systems) == case.systems, case.why
    assert len(systems) == len(case.systems), f"each station once: {case.why}"
    assert found.picker is case.picker, case.why
    teams = [team for system in found.care_systems for team in system.teams]
    assert {team.triageTeamId for team in teams} == case.allowed, case.why
    assert len(teams) == len(case.allowed), "each allowed team once"
    assert all(
        team.stationNumber == s.stationNumber for s in found.care_systems for team in s.teams
    )
    assert [f.stationNumber for f in found.blocked_facilities] == case.blocked_facilities, case.why


@dataclass(frozen=True)
class NotOffered:
    fixture: str
    reason: UnavailableReason
    blocked_facilities: list[str]
    why: str


NOT_OFFERED = [
    NotOffered(
        "vets-api_empty.json",
        UnavailableReason.NO_ASSOCIATIONS,
        [],
        why=f"associatedTriageGroups is 0 and there is no record: noAssociations ({RECIPIENTS})",
    ),
    NotOffered(
        "vets-website_all-TG-blocked-recipients-response.json",
        UnavailableReason.ALL_BLOCKED,
        ["583", "607"],
        why=f"associatedTriageGroups == associatedBlockedTriageGroups == 7: allTriageGroupsBlocked "
        f"({RECIPIENTS}); both stations have only blocked teams ({HELPERS})",
    ),
]


@pytest.mark.parametrize("case", NOT_OFFERED, ids=[case.fixture for case in NOT_OFFERED])
async def test_vas_answer_without_a_team_to_message_says_why_as_va_does(case: NotOffered) -> None:
    directory = await care_teams(case.fixture)
    with pytest.raises(NoCareTeam) as none:
        domain.options(directory, True, TODAY)
    assert none.value.reason is case.reason, case.why
    assert [f.stationNumber for f in none.value.blocked_facilities] == case.blocked_facilities


@pytest.mark.parametrize(
    ("station", "home", "why"),
    [
        ("612", "612A4", f"612 is 612A4 ({FACILITIES_HELPER} convert_prod_id)"),
        ("612A4", "612A4", "the care system's own station"),
        ("528", "528", "528 keeps its number; 612A4's fixed name is not 528's"),
    ],
)
async def test_a_renewal_from_vas_complex_teams_answer_starts_at_its_care_system(
    station: str, home: str, why: str
) -> None:
    directory = await care_teams("vets-api_complex_teams.json")
    prescription = Prescription(prescriptionId="1", stationNumber=station)

    resolution = domain.resolve(directory, prescription, False, TODAY)

    systems = resolution.options.care_systems
    assert systems[0].stationNumber == home, why
    assert len(systems) == 8 and resolution.options.picker is PickerKind.DROPDOWN


@pytest.mark.parametrize(
    ("fixture", "allowed", "blocked"),
    [
        ("vets-api_complex_teams.json", set(range(4399547, 4399555)), set()),
        ("vets-api_include_blocked.json", {4399547}, set()),
        ("vets-api_empty.json", set(), set()),
        (
            "vets-website_facility-blocked-recipients-response.json",
            {6978854, 7123233, 56219},
            {7026562, 6832726, 6910405, 6978853},
        ),
        (
            "vets-website_all-TG-blocked-recipients-response.json",
            set(),
            {7026562, 6832726, 6910405, 6978853, 6978854, 7123233, 56219},
        ),
        (
            "vets-website_recipients-response.json",
            {
                7026562,
                6832726,
                6910405,
                6978853,
                6978854,
                7123233,
                56219,
                3658288,
                3658299,
                7654321,
            },
            set(),
        ),
    ],
)
def test_messaging_reads_the_same_answers_with_vas_allowed_teams(
    fixture: str, allowed: set[int], blocked: set[int]
) -> None:
    """Messaging checks a chosen team against SM's list: allowed as in RECIPIENTS (unblocked and
    preferred); a team SM lists both allowed and blocked (include_blocked) is among the allowed, as
    in VA.gov's ``allowedRecipients``."""
    recipients = recipients_from_sm(answer(fixture))
    assert {team.triageTeamId for team in recipients.allowed} == allowed
    assert set(recipients.blocked) == blocked
