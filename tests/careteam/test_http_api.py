"""GET /v1/care-teams: the calling Veteran's options for a new message (no broker needed)."""

import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plumbing.flags import DEFAULT_FILE, OH_PILOT, FeatureFlags, FlagFile
from services.careteam.adapters.directory import DirectoryError
from services.careteam.app import create_app
from services.careteam.config import CareTeamSettings
from services.careteam.domain import VeteranCareTeams
from services.careteam.handlers import Dependencies
from tests.support import bearer

VISTA_ONLY = "1012845331V153043"
OH_ONLY = "1013062086V794840"
OH_PILOT_VETERAN = "1012667122V019349"
ALL_BLOCKED = "1012881470V086192"
SEVEN_STATIONS = "1012853550V207686"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The service, the OH pilot on only for its allow-listed Veteran (no broker: HTTP only)."""
    flags = FlagFile(tmp_path_factory.mktemp("careteam") / "flags.json")
    shutil.copy(DEFAULT_FILE, flags.path)
    flags.change(OH_PILOT, by="test", percentage=0, allow=(OH_PILOT_VETERAN,))
    settings = CareTeamSettings(kafka_bootstrap_servers="127.0.0.1:9", flags_file=flags.path)
    app = create_app(settings)
    yield app
    evaluator: FeatureFlags = app.state.flags
    evaluator.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://careteam") as client:
        yield client


async def care_teams(client: httpx.AsyncClient, veteran_id: str, **query: str) -> httpx.Response:
    return await client.get("/v1/care-teams", params=query, headers=bearer(veteran_id))


def stations(body: dict[str, Any]) -> list[str]:
    return [system["stationNumber"] for system in body["care_systems"]]


async def test_the_veteran_must_present_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/care-teams")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert "Authorization: Bearer" in response.json()["message"]


async def test_a_vista_veteran_sees_recent_teams_and_care_systems(
    client: httpx.AsyncClient,
) -> None:
    response = await care_teams(client, VISTA_ONLY)

    assert response.status_code == 200
    body = response.json()
    assert [team["triageTeamId"] for team in body["recent_teams"]] == [1013155]
    assert body["recent_teams"][0]["displayName"] == "Primary care - Red team 1"
    assert body["care_systems"] == [
        {
            "stationNumber": "442",
            "careSystemName": "VA Cheyenne health care",
            "ehr": "vista",
            "teamCount": 1,
        }
    ]
    assert body["picker"] == "auto"
    assert body["care_system"] is None
    assert body["unavailable_reason"] is None


@pytest.mark.parametrize(
    ("veteran_id", "care_system", "cohort", "kind"),
    [(SEVEN_STATIONS, "442", "base", "dropdown"), (OH_PILOT_VETERAN, "757", "new", "radio")],
    ids=["pilot off", "pilot on"],
)
async def test_each_listing_counts_the_picker_kind_shown_by_cohort(
    client: httpx.AsyncClient, veteran_id: str, care_system: str, cohort: str, kind: str
) -> None:
    shown = (
        f'rxsm_care_system_picker_shown_total{{cohort="{cohort}",flow="new_message",kind="{kind}"}}'
    )

    async def count() -> float:
        text = (await client.get("/metrics")).text
        line = next((line for line in text.splitlines() if line.startswith(shown)), None)
        return float(line.split()[-1]) if line else 0.0

    before = await count()
    await care_teams(client, veteran_id)
    await care_teams(client, veteran_id, care_system=care_system)
    assert await count() == before + 1, "choosing a care system is not another picker shown"


async def test_a_chosen_care_system_comes_with_its_teams(client: httpx.AsyncClient) -> None:
    body = (await care_teams(client, SEVEN_STATIONS, care_system="528A7")).json()

    assert body["picker"] == "dropdown"
    assert stations(body) == ["442", "554", "528A7", "528A8", "612A4", "640", "662"]
    assert len(body["recent_teams"]) == 4
    assert body["blocked_facilities"] == [
        {
            "stationNumber": "506",
            "careSystemName": "VA Ann Arbor health care",
            "ehr": "vista",
            "migratingToOh": True,
        }
    ]
    chosen = body["care_system"]
    assert (chosen["stationNumber"], chosen["careSystemName"]) == (
        "528A7",
        "VA New York state health care",
    )
    assert [team["triageTeamId"] for team in chosen["teams"]] == [1528701]


async def test_a_care_system_is_chosen_by_its_station_number_as_sm_sends_it(
    client: httpx.AsyncClient,
) -> None:
    """vets-api facilities_helper.rb: station 612 is care system 612A4."""
    body = (await care_teams(client, SEVEN_STATIONS, care_system="612")).json()
    assert body["care_system"]["stationNumber"] == "612A4"
    assert body["care_system"]["careSystemName"] == "VA Northern California (multiple facilities)"


async def test_a_station_shared_by_two_care_systems_is_not_one_of_them(
    client: httpx.AsyncClient,
) -> None:
    """528A7 and 528A8 are care systems (vets-website util/helpers.js: facilities are the answer's
    stationNumbers); 528 is neither."""
    response = await care_teams(client, SEVEN_STATIONS, care_system="528")
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_care_system"


async def test_an_unknown_care_system_is_a_422_naming_the_veterans_systems(
    client: httpx.AsyncClient,
) -> None:
    response = await care_teams(client, VISTA_ONLY, care_system="999")
    assert response.status_code == 422
    assert response.json() == {
        "code": "unknown_care_system",
        "message": "Care system 999 is not one of yours. Choose one of: 442.",
    }


async def test_a_malformed_care_system_is_a_422_saying_what_to_fix(
    client: httpx.AsyncClient,
) -> None:
    response = await care_teams(client, VISTA_ONLY, care_system="Cheyenne")
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert [problem["field"] for problem in response.json()["errors"]] == ["query.care_system"]


@pytest.mark.parametrize(
    ("veteran_id", "systems", "reason"),
    [
        (OH_ONLY, [], "no_associations"),
        (OH_PILOT_VETERAN, ["757", "554"], None),
        (ALL_BLOCKED, [], "all_blocked"),
    ],
    ids=["Oracle Health only, pilot off", "mixed, pilot on", "every team blocked"],
)
async def test_oracle_health_and_unavailable_veterans(
    client: httpx.AsyncClient, veteran_id: str, systems: list[str], reason: str | None
) -> None:
    body = (await care_teams(client, veteran_id)).json()
    assert stations(body) == systems
    assert body["unavailable_reason"] == reason


class DownDirectory:
    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        raise DirectoryError("alltriageteams: timed out", transient=True)


async def test_a_directory_that_does_not_answer_is_a_503(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    deps: Dependencies = app.state.careteam
    working = deps.directory
    deps.directory = DownDirectory()
    try:
        response = await care_teams(client, VISTA_ONLY)
    finally:
        deps.directory = working
    assert response.status_code == 503
    assert response.json()["code"] == "directory_unavailable"
