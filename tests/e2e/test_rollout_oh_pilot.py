"""Staged rollout of the Oracle Health pilot (``mhv_secure_messaging_cerner_pilot``) on the real broker.

Each test changes the running flow's flag file as ``rxsm flags set`` does. The services re-read the file
within about half a second, so each test requests renewals until the behaviour changes (bounded), then
checks that renewal in full. The OH pilot's rollout is put back after each test. The renewal flow's own
flag belongs to the renewal service's tests.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from plumbing.flags import OH_PILOT, FlagFile
from tests.e2e.conftest import Flow
from tests.e2e.test_careteam_resolution import (
    DENVER_AND_COLUMBUS,
    MIXED,
    OH,
    OH_ONLY,
    VISTA,
    VISTA_ONLY,
    care_teams_outcome,
    renewal_request,
    teams_by_system,
)
from tests.support import bearer, eventually

SPOKANE_PHARMACY_OH = 3066802
OH_TEAMS = {"668": [3066803, SPOKANE_PHARMACY_OH, 3066801], "687": [3068702, 3068701]}

Outcome = dict[str, Any]


def oh_only_renewal() -> dict[str, Any]:
    return renewal_request(OH_ONLY, "668", OH)


def mixed_renewal() -> dict[str, Any]:
    return renewal_request(MIXED, "554", DENVER_AND_COLUMBUS)


def vista_renewal() -> dict[str, Any]:
    return renewal_request(VISTA_ONLY, "442", VISTA)


def resolved(cohort: str, stations: list[str] | None = None) -> Callable[[Outcome], bool]:
    """Care teams resolved in ``cohort`` (and for those care systems, when given)."""
    return lambda e: (
        e["event_type"] == "careteams.resolved"
        and e["cohort"] == cohort
        and (stations is None or list(teams_by_system(e)) == stations)
    )


def unavailable(cohort: str) -> Callable[[Outcome], bool]:
    return lambda e: e["event_type"] == "careteams.unavailable" and e["cohort"] == cohort


async def next_renewal(
    flow: Flow,
    request: Callable[[], dict[str, Any]],
    expected: Callable[[Outcome], bool],
    within: float = 15.0,
) -> Outcome:
    """The care-team event of the first renewal whose outcome is ``expected``.

    A fresh renewal is requested until the running services show the flag change: the renewal service
    in the cohort it gives the request, the care-team service in the teams it offers. After ``within``
    seconds without it, the change never reached them and the test fails.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        event = await care_teams_outcome(flow, request())
        if expected(event):
            return event
        assert asyncio.get_running_loop().time() < deadline, (
            f"the flag change never reached the flow: still {event['event_type']}, "
            f"cohort {event['cohort']}"
        )
        await asyncio.sleep(0.2)


async def listed_stations(flow: Flow, veteran_id: str) -> list[str]:
    """The care systems ``GET /v1/care-teams`` lists for the Veteran now."""
    response = await flow.careteam.get("/v1/care-teams", headers=bearer(veteran_id))
    assert response.status_code == 200, response.text
    return [system["stationNumber"] for system in response.json()["care_systems"]]


def counted(metrics: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s Prometheus samples that carry every one of ``labels``."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


async def renewals_counted(flow: Flow, **labels: str) -> float:
    metrics = (await flow.careteam.get("/metrics")).text
    return counted(metrics, "rxsm_renewals_total", **labels)


@pytest.fixture
async def pilot(flow: Flow) -> AsyncIterator[FlagFile]:
    """The running flow's flag file; the OH pilot's rollout is put back once the test is done, and
    the services are seen to use it again (the mixed Veteran's care systems and cohort as before)."""
    before = flow.flags.read()[OH_PILOT]
    listed = await listed_stations(flow, MIXED)
    yield flow.flags
    flow.flags.write(OH_PILOT, before)

    async def restored() -> bool | None:
        return await listed_stations(flow, MIXED) == listed or None

    await eventually(restored, within=10)
    await next_renewal(flow, mixed_renewal, resolved("new" if "757" in listed else "base"))


async def test_an_allow_listed_veteran_gets_oracle_health_teams_at_zero_percent(
    flow: Flow, pilot: FlagFile
) -> None:
    pilot.change(OH_PILOT, by="test", percentage=0, allow=(OH_ONLY,), killed=False)

    others = await next_renewal(flow, mixed_renewal, resolved("base", ["554"]))
    assert teams_by_system(others) == {"554": [1554002, 1554001]}, "not allow-listed: VistA only"
    assert others["picker"] == "auto"

    listed = await next_renewal(flow, oh_only_renewal, resolved("new"))
    assert teams_by_system(listed) == OH_TEAMS
    assert {system["ehr"] for system in listed["care_systems"]} == {"oracle_health"}
    assert listed["suggested_team_id"] == SPOKANE_PHARMACY_OH
    assert await listed_stations(flow, OH_ONLY) == ["668", "687"]
    assert await listed_stations(flow, MIXED) == ["554"]


async def test_off_the_allow_list_the_same_veterans_next_renewal_has_no_oracle_health_teams(
    flow: Flow, pilot: FlagFile
) -> None:
    pilot.change(OH_PILOT, by="test", percentage=0, allow=(OH_ONLY,), killed=False)
    await next_renewal(flow, mixed_renewal, resolved("base", ["554"]))
    assert teams_by_system(await next_renewal(flow, oh_only_renewal, resolved("new"))) == OH_TEAMS

    pilot.change(OH_PILOT, by="test", allow=())
    event = await next_renewal(flow, oh_only_renewal, unavailable("base"))

    assert (event["reason"], event["ehr"], event["tool"]) == (
        "no_associations",
        "oracle_health",
        "sm",
    )
    assert await listed_stations(flow, OH_ONLY) == []


async def test_the_kill_switch_wins_over_the_allow_list_and_the_percentage(
    flow: Flow, pilot: FlagFile
) -> None:
    pilot.change(OH_PILOT, by="test", percentage=100, allow=(OH_ONLY,), killed=False)
    assert teams_by_system(await next_renewal(flow, oh_only_renewal, resolved("new"))) == OH_TEAMS

    pilot.change(OH_PILOT, by="test", killed=True)
    event = await next_renewal(flow, oh_only_renewal, unavailable("base"))
    assert event["reason"] == "no_associations"
    await next_renewal(flow, mixed_renewal, resolved("base", ["554"]))

    pilot.change(OH_PILOT, by="test", killed=False)
    again = await next_renewal(flow, oh_only_renewal, resolved("new"))
    assert teams_by_system(again) == OH_TEAMS, "lifting the kill switch restores the rollout"


async def test_a_renewal_resolved_before_the_pilot_turned_off_keeps_its_teams_and_sends(
    flow: Flow, pilot: FlagFile
) -> None:
    pilot.change(OH_PILOT, by="test", percentage=0, allow=(OH_ONLY,), killed=False)
    await next_renewal(flow, mixed_renewal, resolved("base", ["554"]))
    before = await next_renewal(flow, oh_only_renewal, resolved("new"))
    renewal_id = before["renewal_id"]

    async def drafted() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(OH_ONLY)
        )
        return response.json() if response.status_code == 200 else None

    draft = await eventually(drafted)
    assert (draft["recipient_id"], draft["ehr"]) == (SPOKANE_PHARMACY_OH, "oracle_health")

    pilot.change(OH_PILOT, by="test", allow=())
    await next_renewal(flow, oh_only_renewal, unavailable("base"))

    choice = await flow.messaging.get(
        f"/v1/renewals/{renewal_id}/care-teams", headers=bearer(OH_ONLY)
    )
    assert choice.status_code == 200, choice.text
    assert {s["stationNumber"] for s in choice.json()["care_systems"]} == {"668", "687"}
    sent = await flow.messaging.post(f"/v1/drafts/{draft['id']}/send", headers=bearer(OH_ONLY))
    assert sent.status_code == 200, sent.text
    assert (sent.json()["ehr"], sent.json()["station_number"]) == ("oracle_health", "668")


async def test_the_cohort_on_the_events_and_metrics_follows_the_flag(
    flow: Flow, pilot: FlagFile
) -> None:
    new = {"cohort": "new", "ehr": "vista", "step": "care_team_resolved"}
    base = {**new, "cohort": "base"}
    counts = {
        "new": await renewals_counted(flow, **new),
        "base": await renewals_counted(flow, **base),
    }

    pilot.change(OH_PILOT, by="test", percentage=100, allow=(), killed=False)
    in_new = await next_renewal(flow, vista_renewal, resolved("new"))
    assert teams_by_system(in_new) == {"442": [1013155]}, "the new flow offers VistA teams alike"

    pilot.change(OH_PILOT, by="test", percentage=0)
    in_base = await next_renewal(flow, vista_renewal, resolved("base"))
    assert teams_by_system(in_base) == {"442": [1013155]}

    assert await renewals_counted(flow, **new) >= counts["new"] + 1
    assert await renewals_counted(flow, **base) >= counts["base"] + 1
