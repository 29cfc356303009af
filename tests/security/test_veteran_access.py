"""Nobody gets into a Veteran's drafts, care teams or journey but that Veteran.

Every Veteran-facing call needs a valid bearer token (signed with the configured key, for rxsm, not
expired), and answers only for its subject: another Veteran's draft, renewal draft, care teams or
journey is not found (404), and a refused call changes nothing. The services run in this process
without a broker (tests/faults/inprocess.py).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from plumbing.auth import issue_service_token
from tests.faults.flow import OH_VETERAN, VISTA_VETERAN, renewal_requests
from tests.faults.inprocess import HttpServices, http_services
from tests.security.tokens import AUTH, veteran_credentials
from tests.support import bearer

OWNER = VISTA_VETERAN
OTHER = OH_VETERAN
"""Both demo Veterans with care teams: the other one is a real Veteran of the service, too."""


@dataclass(frozen=True)
class Owned:
    renewal_id: str
    renewal_draft_id: str
    message_draft_id: str


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpServices]:
    async with http_services(tmp_path_factory.mktemp("veteran-access")) as running:
        yield running


@pytest.fixture(scope="module")
async def owned(services: HttpServices) -> Owned:
    """The owner's renewal (with its prefilled draft) and a general new message."""
    resolved = await services.renewal_draft(renewal_requests(1)[0].body)
    renewal_id = str(resolved.renewal_id)
    draft = await services.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=bearer(OWNER))
    assert draft.status_code == 200, draft.text
    message = await services.messaging.post(
        "/v1/drafts",
        json={
            "recipient_id": 1013155,
            "team_selection": "recent",
            "category": "OTHER",
            "subject": "A question",
            "body": "When is my next appointment?",
        },
        headers=bearer(OWNER),
    )
    assert message.status_code == 201, message.text
    return Owned(renewal_id, draft.json()["id"], message.json()["id"])


def calls_on(owned: Owned) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(service, method, path, JSON body) of every call on the owner's things."""
    calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("messaging", "GET", f"/v1/renewals/{owned.renewal_id}/draft", None),
        ("messaging", "GET", f"/v1/renewals/{owned.renewal_id}/care-teams", None),
    ]
    for draft in (owned.renewal_draft_id, owned.message_draft_id):
        calls += [
            ("messaging", "GET", f"/v1/drafts/{draft}", None),
            ("messaging", "PUT", f"/v1/drafts/{draft}", {"subject": "Changed by someone else"}),
            ("messaging", "POST", f"/v1/drafts/{draft}/send", None),
            ("messaging", "DELETE", f"/v1/drafts/{draft}", None),
        ]
    return calls


async def call(
    services: HttpServices,
    service: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> httpx.Response:
    client: httpx.AsyncClient = getattr(services, service)
    return await client.request(method, path, json=body, headers=headers)


async def assert_untouched(services: HttpServices, owned: Owned) -> None:
    """The owner's drafts are still there, unchanged and unsent."""
    for draft in (owned.renewal_draft_id, owned.message_draft_id):
        response = await services.messaging.get(f"/v1/drafts/{draft}", headers=bearer(OWNER))
        assert response.status_code == 200, response.text
        assert response.json()["subject"] != "Changed by someone else"


@pytest.mark.parametrize("credential", list(veteran_credentials(OWNER)))
async def test_every_veteran_call_needs_a_valid_token_of_the_veteran(
    services: HttpServices, owned: Owned, credential: str
) -> None:
    headers = veteran_credentials(OWNER)[credential]
    own_calls = [
        ("messaging", "POST", "/v1/drafts", {"recipient_id": 1013155}),
        ("careteam", "GET", "/v1/care-teams", None),
    ]
    for service, method, path, body in [*calls_on(owned), *own_calls]:
        response = await call(services, service, method, path, body, headers)
        assert response.status_code == 401, (credential, method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    await assert_untouched(services, owned)


async def test_another_veterans_drafts_and_care_teams_are_not_found(
    services: HttpServices, owned: Owned
) -> None:
    for service, method, path, body in calls_on(owned):
        response = await call(services, service, method, path, body, bearer(OTHER))
        assert response.status_code == 404, (method, path, response.text)
        assert OWNER not in response.text
    await assert_untouched(services, owned)


async def test_a_veterans_own_care_teams_are_the_only_ones_listed(services: HttpServices) -> None:
    own = await services.careteam.get("/v1/care-teams", headers=bearer(OWNER))
    other = await services.careteam.get("/v1/care-teams", headers=bearer(OTHER))

    assert (own.status_code, other.status_code) == (200, 200)
    assert [s["stationNumber"] for s in own.json()["care_systems"]] == ["442"]
    assert [s["stationNumber"] for s in other.json()["care_systems"]] == ["668", "687"]


async def test_a_renewals_journey_is_answered_to_its_veteran_only(services: HttpServices) -> None:
    request = renewal_requests(1)[0]
    accepted = await services.renewal.post(
        "/v1/renewals",
        json=request.body,
        headers={"Authorization": f"Bearer {issue_service_token(AUTH)}"},
    )
    assert accepted.status_code == 202, accepted.text
    journey = f"/v1/renewals/{accepted.json()['renewal_id']}"
    await services.journey_reads_outbox()

    for service in (services.renewal, services.journey):  # the intake, and the journey
        anonymous = await service.get(journey)
        someone_else = await service.get(journey, headers=bearer(OTHER))
        owner = await service.get(journey, headers=bearer(request.veteran_id))

        assert anonymous.status_code == 401, anonymous.text
        assert someone_else.status_code == 404, someone_else.text
        assert owner.status_code == 200, owner.text
        assert owner.json()["renewal_id"] == accepted.json()["renewal_id"]
        assert request.veteran_id not in owner.text
