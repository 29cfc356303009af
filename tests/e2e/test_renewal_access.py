"""Who may call the renewal service: ``POST /v1/renewals`` only the Medications app with its service
token; its token opens no Veteran endpoint; the journey service and the intake answer service tokens,
not anonymous callers."""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from plumbing.auth import AuthSettings, issue_service_token, issue_token
from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import VETERAN, reached, renewal_request
from tests.support import eventually

SETTINGS = AuthSettings()


@pytest.fixture
async def anyone(flow: Flow) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the renewal service that presents no credential unless a test gives one."""
    transport = httpx.ASGITransport(app=flow.apps["renewal"])
    async with httpx.AsyncClient(transport=transport, base_url="http://renewal") as client:
        yield client


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer_of(issue_service_token(SETTINGS, ttl=timedelta(seconds=-1))), 401),
        (
            bearer_of(
                issue_service_token(
                    SETTINGS.model_copy(
                        update={"service_jwt_key": "not-the-medications-app-service-key"}
                    )
                )
            ),
            401,
        ),
        (bearer_of(issue_token(VETERAN, SETTINGS)), 401),
        ({"Authorization": "Basic bWVkczptZWRz"}, 401),
        (bearer_of(issue_service_token(SETTINGS, subject="careteam-service")), 403),
    ],
    ids=[
        "no token",
        "expired",
        "bad signature",
        "a Veteran's token",
        "not a bearer token",
        "another service",
    ],
)
async def test_only_the_medications_app_may_ask_for_a_renewal(
    anyone: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    body = renewal_request()
    response = await anyone.post("/v1/renewals", json=body, headers=headers)

    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "renewal_id" not in response.text


async def test_the_medications_app_token_opens_no_veteran_endpoint(flow: Flow) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    assert accepted.status_code == 202, accepted.text
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted"))

    as_service = bearer_of(issue_service_token(SETTINGS))
    draft = await flow.messaging.get(f"/v1/renewals/{renewal_id}/draft", headers=as_service)
    assert draft.status_code == 401


async def test_the_ledger_answers_services_not_anonymous_callers(
    flow: Flow, anyone: httpx.AsyncClient
) -> None:
    accepted = await flow.renewal.post("/v1/renewals", json=renewal_request())
    renewal_id = accepted.json()["renewal_id"]
    await eventually(reached(flow, renewal_id, "drafted"))
    sre = {"Authorization": f"Bearer {issue_service_token(AuthSettings(), subject='rxsm-cli')}"}
    transport = httpx.ASGITransport(app=flow.apps["journey"])
    async with httpx.AsyncClient(transport=transport, base_url="http://journey") as journey:
        assert (await journey.get(f"/v1/renewals/{renewal_id}")).status_code == 401
        assert (await journey.get("/v1/renewals", params={"since": "1h"})).status_code == 401
        found = await journey.get(f"/v1/renewals/{renewal_id}", headers=sre)
        listed = await journey.get("/v1/renewals", params={"since": "1h"}, headers=sre)
    assert (await anyone.get(f"/v1/renewals/{renewal_id}")).status_code == 401
    intake = await anyone.get(f"/v1/renewals/{renewal_id}", headers=sre)

    assert found.status_code == listed.status_code == intake.status_code == 200
    assert found.json()["renewal_id"] == intake.json()["renewal_id"] == renewal_id
    answers = found.text + listed.text + intake.text
    assert VETERAN not in answers, "no Veteran id in the SRE's answers"
