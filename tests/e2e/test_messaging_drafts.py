"""The SM front end's draft calls, end to end on the real broker: the prefilled renewal draft and its
care teams, edits, deletes and general new messages, with every refusal's code and status.

Care teams come from the demo SM data (services/careteam/data): the VistA-only Veteran's one team at
Cheyenne (442), and the mixed Veteran's teams at Denver (554, cardiology blocked) and Columbus (757, OH).
"""

from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.events import CareTeamsResolved
from schemas.records import CareSystem, CareTeam, Prescription
from schemas.vocabulary import Ehr, PickerKind
from tests.e2e.conftest import Flow
from tests.support import bearer, eventually, read_topic

VISTA_ONLY = "1012845331V153043"
MIXED = "1012667122V019349"
STRANGER = "9999999999V999999"
CHEYENNE_PRIMARY = 1013155
DENVER_PRIMARY = 1554001
DENVER_CARDIOLOGY_BLOCKED = 1554003
COLUMBUS_PRIMARY_OH = 3075701

PRESCRIPTION: dict[str, Any] = {
    "prescriptionName": "LISINOPRIL 10MG TAB",
    "prescriptionNumber": "3636691",
    "dispStatus": "Active",
    "refillRemaining": 0,
    "expirationDate": "2027-03-05T05:00:00.000Z",
    "isRefillable": False,
    "isRenewable": True,
    "prescriptionSource": "VA",
    "stationNumber": "442",
    "sig": "TAKE ONE TABLET BY MOUTH DAILY",
    "reason": "Blood pressure",
    "providerFirstName": "Jane",
    "providerLastName": "Smith",
    "quantity": 30,
}

PREFILLED_BODY = (
    "Medication name, strength, and form: LISINOPRIL 10MG TAB\n"
    "Prescription number: 3636691\n"
    "Instructions: TAKE ONE TABLET BY MOUTH DAILY\n"
    "Provider who prescribed it: Jane Smith\n"
    "Number of refills left: 0\n"
    "Prescription expiration date: March 5, 2027\n"
    "Reason for use: Blood pressure\n"
    "Last filled on: Not filled yet\n"
    "Quantity: 30"
)


async def renewal_draft(flow: Flow) -> dict[str, Any]:
    """A VistA renewal through the whole flow, and its prefilled draft."""
    request = {
        "veteranId": VISTA_ONLY,
        "prescription": {**PRESCRIPTION, "prescriptionId": str(uuid4())},
        "facilities": [{"stationNumber": "442", "ehr": "vista"}],
    }
    accepted = await flow.renewal.post("/v1/renewals", json=request)
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]

    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{renewal_id}/draft", headers=bearer(VISTA_ONLY)
        )
        return response.json() if response.status_code == 200 else None

    return await eventually(draft)


def team(team_id: int, station: str, ehr: Ehr) -> CareTeam:
    return CareTeam(
        triageTeamId=team_id,
        name=f"TEAM {team_id}",
        displayName=f"Team {team_id}",
        stationNumber=station,
        careSystemName=f"Care system {station}",
        ehr=ehr,
    )


async def mixed_renewal_draft(flow: Flow, suggested: int | None) -> dict[str, Any]:
    """A renewal draft for the mixed Veteran from a care-teams event put on the topic directly."""
    event = CareTeamsResolved(
        renewal_id=uuid4(),
        veteran_id=MIXED,
        ehr=Ehr.VISTA,
        prescription=Prescription(prescriptionId=str(uuid4())),
        care_systems=[
            CareSystem(
                stationNumber="554",
                careSystemName="Care system 554",
                ehr=Ehr.VISTA,
                teams=[team(DENVER_PRIMARY, "554", Ehr.VISTA)],
            ),
            CareSystem(
                stationNumber="757",
                careSystemName="Care system 757",
                ehr=Ehr.ORACLE_HEALTH,
                teams=[team(COLUMBUS_PRIMARY_OH, "757", Ehr.ORACLE_HEALTH)],
            ),
        ],
        suggested_team_id=suggested,
        picker=PickerKind.RADIO,
    )
    producer = AIOKafkaProducer(bootstrap_servers=flow.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.CARE_TEAMS, event.model_dump_json().encode(), key=event.key
        )
    finally:
        await producer.stop()

    async def draft() -> dict[str, Any] | None:
        response = await flow.messaging.get(
            f"/v1/renewals/{event.renewal_id}/draft", headers=bearer(MIXED)
        )
        return response.json() if response.status_code == 200 else None

    return await eventually(draft)


async def draft_events(flow: Flow, draft_id: str, count: int = 1) -> list[dict[str, Any]]:
    return await read_topic(
        flow.bootstrap, topics.DRAFTS, lambda e: e.get("draft_id") == draft_id, count=count
    )


async def new_message(flow: Flow, veteran: str = MIXED, **changes: Any) -> Any:
    body = {
        "recipient_id": DENVER_PRIMARY,
        "team_selection": "recent",
        "category": "APPOINTMENTS",
        "subject": "Moving my appointment",
        "body": "Can we move it to the afternoon?",
        "platform": "web",
        **changes,
    }
    return await flow.messaging.post("/v1/drafts", json=body, headers=bearer(veteran))


async def test_a_renewal_is_prefilled_as_sm_builds_it_with_its_care_teams(flow: Flow) -> None:
    draft = await renewal_draft(flow)
    assert draft["body"] == PREFILLED_BODY
    assert (draft["subject"], draft["category"]) == ("Renewal Needed", "MEDICATIONS")
    assert (draft["recipient_id"], draft["team_selection"]) == (CHEYENNE_PRIMARY, "suggested")

    response = await flow.messaging.get(
        f"/v1/renewals/{draft['renewal_id']}/care-teams", headers=bearer(VISTA_ONLY)
    )
    assert response.status_code == 200, response.text
    choice = response.json()
    assert (choice["draft_id"], choice["picker"]) == (draft["id"], "auto")
    assert choice["suggested_team_id"] == CHEYENNE_PRIMARY
    assert [team["triageTeamId"] for team in choice["care_systems"][0]["teams"]] == [
        CHEYENNE_PRIMARY
    ]

    [created] = await draft_events(flow, draft["id"])
    assert created["event_type"] == "draft.created"
    assert (created["renewal_id"], created["tool"]) == (draft["renewal_id"], "sm")
    assert "body" not in created and "subject" not in created


async def test_editing_a_renewal_draft_publishes_what_changed(flow: Flow) -> None:
    draft = await renewal_draft(flow)
    url, owner = f"/v1/drafts/{draft['id']}", bearer(VISTA_ONLY)

    edited = await flow.messaging.put(
        url, json={"subject": "Renewal Needed soon", "body": "Please renew"}, headers=owner
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["subject"], edited.json()["body"]) == (
        "Renewal Needed soon",
        "Please renew",
    )
    assert (await flow.messaging.get(url, headers=owner)).json()["body"] == "Please renew"
    _, updated = await draft_events(flow, draft["id"], count=2)
    assert (updated["event_type"], updated["changed"]) == ("draft.updated", ["subject", "body"])


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"subject": "x" * 51}, 422, "subject_too_long"),
        ({"body": "   "}, 422, "body_required"),
        ({"category": "OTHER"}, 422, "category_locked"),
        ({"recipient_id": 4242, "team_selection": "care_system_picker"}, 422, "SM119"),
        ({"recipient_id": DENVER_PRIMARY}, 422, "team_selection_required"),
        ({"recipientId": DENVER_PRIMARY}, 422, "invalid_request"),
    ],
    ids=["long subject", "blank body", "renewal category", "unknown team", "how missing", "typo"],
)
async def test_a_renewal_draft_edit_to_fix_is_refused_with_its_code(
    flow: Flow, changes: dict[str, Any], status: int, code: str
) -> None:
    draft = await renewal_draft(flow)
    response = await flow.messaging.put(
        f"/v1/drafts/{draft['id']}", json=changes, headers=bearer(VISTA_ONLY)
    )
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.json()["message"]


async def test_a_renewal_draft_moves_only_to_a_candidate_the_veteran_is_not_blocked_from(
    flow: Flow,
) -> None:
    draft = await mixed_renewal_draft(flow, suggested=None)
    assert draft["recipient_id"] is None
    url, owner = f"/v1/drafts/{draft['id']}", bearer(MIXED)

    blocked = await flow.messaging.put(
        url,
        json={"recipient_id": DENVER_CARDIOLOGY_BLOCKED, "team_selection": "care_system_picker"},
        headers=owner,
    )
    assert (blocked.status_code, blocked.json()["code"]) == (422, "SM151")

    moved = await flow.messaging.put(
        url,
        json={"recipient_id": COLUMBUS_PRIMARY_OH, "team_selection": "care_system_picker"},
        headers=owner,
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["ehr"], moved.json()["station_number"]) == ("oracle_health", "757")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/drafts/{id}"),
        ("PUT", "/v1/drafts/{id}"),
        ("DELETE", "/v1/drafts/{id}"),
        ("POST", "/v1/drafts/{id}/send"),
        ("GET", "/v1/renewals/{renewal_id}/draft"),
        ("GET", "/v1/renewals/{renewal_id}/care-teams"),
    ],
)
async def test_another_veterans_draft_is_not_found(flow: Flow, method: str, path: str) -> None:
    draft = await renewal_draft(flow)
    url = path.format(id=draft["id"], renewal_id=draft["renewal_id"])
    body = {"body": "mine now"} if method == "PUT" else None
    response = await flow.messaging.request(method, url, json=body, headers=bearer(STRANGER))
    assert (response.status_code, response.json()["code"]) == (404, "draft_not_found")
    assert (await flow.messaging.request(method, url, json=body)).status_code == 401
    still = await flow.messaging.get(f"/v1/drafts/{draft['id']}", headers=bearer(VISTA_ONLY))
    assert still.json()["body"] == PREFILLED_BODY


async def test_a_deleted_draft_is_gone(flow: Flow) -> None:
    draft = await renewal_draft(flow)
    url, owner = f"/v1/drafts/{draft['id']}", bearer(VISTA_ONLY)
    assert (await flow.messaging.delete(url, headers=owner)).status_code == 204
    assert (await flow.messaging.get(url, headers=owner)).status_code == 404
    assert (await flow.messaging.delete(url, headers=owner)).status_code == 404
    renewal = await flow.messaging.get(f"/v1/renewals/{draft['renewal_id']}/draft", headers=owner)
    assert renewal.status_code == 404
    _, deleted = await draft_events(flow, draft["id"], count=2)
    assert deleted["event_type"] == "draft.deleted"


async def test_a_general_new_message_to_a_team_the_veteran_picked(flow: Flow) -> None:
    created = await new_message(flow)
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["renewal_id"] is None
    assert (draft["category"], draft["team_selection"], draft["platform"]) == (
        "APPOINTMENTS",
        "recent",
        "web",
    )
    [event] = await draft_events(flow, draft["id"])
    assert (event["event_type"], event["renewal_id"], event["team_selection"]) == (
        "draft.created",
        None,
        "recent",
    )
    assert (event["platform"], event["station_number"], event["ehr"]) == ("web", "554", "vista")

    edited = await flow.messaging.put(
        f"/v1/drafts/{draft['id']}",
        json={
            "category": "OTHER",
            "recipient_id": COLUMBUS_PRIMARY_OH,
            "team_selection": "care_system_picker",
        },
        headers=bearer(MIXED),
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["category"], edited.json()["ehr"]) == ("OTHER", "oracle_health")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"recipient_id": DENVER_CARDIOLOGY_BLOCKED}, "SM151"),
        ({"recipient_id": 4242}, "SM119"),
        ({"recipient_id": CHEYENNE_PRIMARY}, "SM119"),
        ({"subject": "x" * 51}, "subject_too_long"),
        ({"subject": ""}, "subject_required"),
        ({"body": "\n"}, "body_required"),
        ({"category": "GOSSIP"}, "invalid_request"),
        ({"team_selection": "guessed"}, "invalid_request"),
    ],
    ids=[
        "blocked team",
        "unknown team",
        "another veteran's team",
        "long subject",
        "no subject",
        "blank body",
        "unknown category",
        "unknown selection",
    ],
)
async def test_a_general_new_message_to_fix_is_refused_with_its_code(
    flow: Flow, changes: dict[str, Any], code: str
) -> None:
    response = await new_message(flow, **changes)
    assert (response.status_code, response.json()["code"]) == (422, code), response.text
