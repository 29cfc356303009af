"""Care-team resolution end to end on the real broker: a renewal request in, the care-teams event out.

Each renewal goes through the renewal service's ``POST /v1/renewals``; the outcome is read from the
``rxsm.sm.care-teams.v1`` topic. The demo Veterans are described in services/careteam/data/README.md.
Here the OH pilot is swapped in-process where a test needs it; test_rollout_oh_pilot.py drives the real
flag file.
"""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import RenewalRequested
from schemas.records import Prescription
from schemas.vocabulary import Ehr
from services.careteam.adapters.demo import DemoDirectory
from services.careteam.adapters.directory import (
    BoundedDirectory,
    CareTeamDirectory,
    DirectoryBudget,
)
from services.careteam.adapters.flags import OhPilot
from services.careteam.domain import VeteranCareTeams
from services.careteam.handlers import Dependencies
from tests.e2e.conftest import Flow
from tests.support import bearer, read_topic

VISTA_ONLY = "1012845331V153043"
OH_ONLY = "1013062086V794840"
MIXED = "1012667122V019349"
NO_ASSOCIATIONS = "1013599370V295311"
ALL_BLOCKED = "1012881470V086192"
SIX_SYSTEMS = "1012853550V207686"

VISTA = [{"stationNumber": "442", "ehr": "vista"}]
OH = [
    {"stationNumber": "668", "ehr": "oracle_health"},
    {"stationNumber": "687", "ehr": "oracle_health"},
]
DENVER_AND_COLUMBUS = [
    {"stationNumber": "554", "ehr": "vista"},
    {"stationNumber": "757", "ehr": "oracle_health"},
]
ORACLE_HEALTH_FIELDS = {
    "medicationRequestStatus": "active",
    "medicationCategory": "va_prescription",
    "dispenseCount": 1,
    "completedDispenseCount": 1,
    "numberOfRepeatsAllowed": 0,
    "refillRequested": False,
    "dispenseInProgress": False,
}


def renewal_request(
    veteran_id: str, station: str, facilities: list[dict[str, str]], **changes: Any
) -> dict[str, Any]:
    """A clearly renewable prescription: active, no refills left, expiring in 60 days."""
    oracle_health = any(
        f["stationNumber"] == station and f["ehr"] == "oracle_health" for f in facilities
    )
    return {
        "veteranId": veteran_id,
        "prescription": {
            "prescriptionId": str(uuid4()),
            "prescriptionName": "METFORMIN HCL 500MG TAB",
            "prescriptionNumber": "2719553",
            "dispStatus": "Active",
            "refillRemaining": 0,
            "expirationDate": (date.today() + timedelta(days=60)).isoformat(),
            "isRefillable": False,
            "isRenewable": True,
            "prescriptionSource": "VA",
            "stationNumber": station,
            "sig": "TAKE ONE TABLET BY MOUTH TWICE A DAY WITH MEALS",
            "providerFirstName": "Jane",
            "providerLastName": "Smith",
            "quantity": 180,
            "sortedDispensedDate": (date.today() - timedelta(days=85)).isoformat(),
            **(ORACLE_HEALTH_FIELDS if oracle_health else {}),
            **changes,
        },
        "facilities": facilities,
    }


async def care_teams_outcome(flow: Flow, body: dict[str, Any]) -> dict[str, Any]:
    """Request the renewal and return the care-team service's event for it."""
    accepted = await flow.renewal.post("/v1/renewals", json=body)
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]
    [event] = await read_topic(
        flow.bootstrap, topics.CARE_TEAMS, lambda e: e.get("renewal_id") == renewal_id
    )
    return event


def careteam(flow: Flow) -> Dependencies:
    deps: Dependencies = flow.apps["careteam"].state.careteam
    return deps


class Pilot:
    """The OH pilot on for the given Veterans only."""

    def __init__(self, *veterans: str) -> None:
        self.veterans = set(veterans)

    def is_on(self, veteran_id: str) -> bool:
        return veteran_id in self.veterans


@contextmanager
def oh_pilot(flow: Flow, pilot: OhPilot) -> Iterator[None]:
    """The care-team service evaluates the Oracle Health pilot with ``pilot`` for a while."""
    deps = careteam(flow)
    previous, deps.oh_pilot = deps.oh_pilot, pilot
    try:
        yield
    finally:
        deps.oh_pilot = previous


@contextmanager
def directory(flow: Flow, replacement: CareTeamDirectory) -> Iterator[None]:
    deps = careteam(flow)
    previous, deps.directory = deps.directory, replacement
    try:
        yield
    finally:
        deps.directory = previous


def teams_by_system(event: dict[str, Any]) -> dict[str, list[int]]:
    return {
        system["stationNumber"]: [team["triageTeamId"] for team in system["teams"]]
        for system in event["care_systems"]
    }


async def test_a_vista_renewal_resolves_to_the_veterans_recent_team(flow: Flow) -> None:
    event = await care_teams_outcome(flow, renewal_request(VISTA_ONLY, "442", VISTA))

    assert event["event_type"] == "careteams.resolved"
    assert event["tool"] == "sm"
    assert event["ehr"] == "vista"
    assert teams_by_system(event) == {"442": [1013155]}
    assert event["care_systems"][0]["ehr"] == "vista"
    assert event["picker"] == "auto"
    assert (event["suggested_team_id"], event["suggestion_basis"]) == (1013155, "recent_team")
    assert [team["triageTeamId"] for team in event["recent_teams"]] == [1013155]
    assert event["blocked_facilities"] == []
    metrics = (await flow.careteam.get("/metrics")).text
    assert 'step="care_team_resolved"' in metrics
    shown = 'rxsm_care_system_picker_shown_total{{cohort="{}",flow="renewal",kind="auto"}}'
    assert event["cohort"] in {"new", "base"}
    assert shown.format(event["cohort"]) in metrics


async def test_an_oracle_health_renewal_offers_the_facilities_message_pools_with_the_pilot_on(
    flow: Flow,
) -> None:
    with oh_pilot(flow, Pilot(OH_ONLY)):
        event = await care_teams_outcome(flow, renewal_request(OH_ONLY, "668", OH))

    assert event["event_type"] == "careteams.resolved"
    assert event["ehr"] == "oracle_health"
    assert teams_by_system(event) == {"668": [3066803, 3066802, 3066801], "687": [3068702, 3068701]}
    assert {system["ehr"] for system in event["care_systems"]} == {"oracle_health"}
    assert event["picker"] == "radio"
    assert (event["suggested_team_id"], event["suggestion_basis"]) == (3066802, "pharmacy")
    assert event["recent_teams"] == []


async def test_the_same_oracle_health_veteran_without_the_pilot_has_no_care_team(
    flow: Flow,
) -> None:
    with oh_pilot(flow, Pilot()):
        event = await care_teams_outcome(flow, renewal_request(OH_ONLY, "668", OH))

    assert event["event_type"] == "careteams.unavailable"
    assert event["ehr"] == "oracle_health"
    assert event["reason"] == "no_associations"


async def test_a_mixed_veteran_gets_both_ehrs_with_the_prescriptions_care_system_first(
    flow: Flow,
) -> None:
    body = renewal_request(
        MIXED, "554", DENVER_AND_COLUMBUS, providerFirstName="Maria", providerLastName="Alvarez"
    )
    with oh_pilot(flow, Pilot(MIXED)):
        event = await care_teams_outcome(flow, body)

    assert event["event_type"] == "careteams.resolved"
    assert event["ehr"] == "vista"
    assert teams_by_system(event) == {"554": [1554002, 1554001], "757": [3075702, 3075701]}
    assert [system["ehr"] for system in event["care_systems"]] == ["vista", "oracle_health"]
    assert event["picker"] == "radio"
    assert (event["suggested_team_id"], event["suggestion_basis"]) == (1554001, "prescriber_team")
    assert [(t["triageTeamId"], t["ehr"]) for t in event["recent_teams"]] == [
        (3075701, "oracle_health")
    ]


async def test_a_veteran_without_associations_has_no_care_team(flow: Flow) -> None:
    event = await care_teams_outcome(flow, renewal_request(NO_ASSOCIATIONS, "442", VISTA))
    assert event["event_type"] == "careteams.unavailable"
    assert event["tool"] == "sm"
    assert event["reason"] == "no_associations"
    assert event["blocked_facilities"] == []
    metrics = (await flow.careteam.get("/metrics")).text
    assert 'reason="no_associations",step="care_team_unavailable"' in metrics


async def test_a_veteran_whose_teams_are_all_blocked_has_no_care_team(flow: Flow) -> None:
    facilities = [
        {"stationNumber": "640", "ehr": "vista"},
        {"stationNumber": "612A4", "ehr": "vista"},
    ]
    event = await care_teams_outcome(flow, renewal_request(ALL_BLOCKED, "640", facilities))
    assert event["event_type"] == "careteams.unavailable"
    assert event["reason"] == "all_blocked"
    assert [(f["stationNumber"], f["migratingToOh"]) for f in event["blocked_facilities"]] == [
        ("612A4", False),
        ("640", False),
    ]


class HangsFor:
    """A directory that never answers for one Veteran and answers for everyone else."""

    def __init__(self, veteran_id: str, others: CareTeamDirectory) -> None:
        self.veteran_id = veteran_id
        self.others = others

    async def care_teams(self, veteran_id: str) -> VeteranCareTeams:
        if veteran_id == self.veteran_id:
            await asyncio.Event().wait()
        return await self.others.care_teams(veteran_id)


async def test_a_hung_directory_costs_one_renewal_its_deadline_then_the_partition_moves_on(
    flow: Flow,
) -> None:
    hung, waiting = uuid4(), uuid4()
    requests = [
        RenewalRequested(
            renewal_id=renewal_id,
            veteran_id=veteran_id,
            ehr=Ehr.VISTA,
            prescription=Prescription(prescriptionId=str(uuid4()), stationNumber="442"),
        )
        for renewal_id, veteran_id in ((hung, "1000000002V000002"), (waiting, VISTA_ONLY))
    ]
    deadline = 1.0
    bounded = BoundedDirectory(
        HangsFor("1000000002V000002", DemoDirectory()),
        DirectoryBudget(attempts=3, backoff_seconds=0.05, deadline_seconds=deadline),
    )
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    with directory(flow, bounded):
        await producer.start()
        try:
            started = time.time()
            for request in requests:  # one key: one partition, consumed one after the other
                await producer.send_and_wait(
                    topics.RENEWAL_REQUESTED, request.model_dump_json().encode(), key=b"same"
                )
        finally:
            await producer.stop()
        outcomes = await read_topic(
            flow.bootstrap,
            topics.CARE_TEAMS,
            lambda e: e.get("renewal_id") in {str(hung), str(waiting)},
            count=2,
        )

    by_renewal = {event["renewal_id"]: event for event in outcomes}
    assert by_renewal[str(hung)]["event_type"] == "careteams.unavailable"
    assert by_renewal[str(hung)]["reason"] == "directory_error"
    assert by_renewal[str(waiting)]["event_type"] == "careteams.resolved"
    hung_at, resolved_at = (
        datetime.fromisoformat(by_renewal[str(r)]["occurred_at"]).timestamp()
        for r in (hung, waiting)
    )
    assert hung_at - started >= deadline
    assert resolved_at - started < deadline + 5, "the next renewal waited only for the deadline"


@pytest.mark.parametrize(
    ("pilot", "oracle_health"), [(Pilot(), []), (Pilot(SIX_SYSTEMS), ["663"])], ids=["off", "on"]
)
async def test_the_new_message_flow_lists_a_veterans_care_teams_over_http(
    flow: Flow, pilot: Pilot, oracle_health: list[str]
) -> None:
    with oh_pilot(flow, pilot):
        response = await flow.careteam.get(
            "/v1/care-teams", params={"care_system": "528A7"}, headers=bearer(SIX_SYSTEMS)
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["picker"] == "dropdown"
    assert len(body["care_systems"]) == 7 + len(oracle_health), "528A7 and 528A8 are two"
    systems = body["care_systems"]
    assert [s["stationNumber"] for s in systems if s["ehr"] == "oracle_health"] == oracle_health
    assert len(body["recent_teams"]) == 4
    assert [team["triageTeamId"] for team in body["care_system"]["teams"]] == [1528701]
