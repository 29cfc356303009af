"""Only the Medications app may ask for a renewal: its own service credential, not a Veteran's.

``POST /v1/renewals`` answers 401 without a valid service token (expired, badly signed, unsigned, a
Veteran's token) and 403 to another service; a refused call saves and publishes nothing, so the same
Idempotency-Key finds no renewal. The service runs in this process without a broker.
"""

from collections.abc import AsyncIterator

import pytest

from plumbing.auth import issue_service_token
from tests.faults.flow import renewal_requests
from tests.faults.inprocess import HttpServices, http_services
from tests.security.tokens import AUTH, service_credentials


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpServices]:
    async with http_services(tmp_path_factory.mktemp("medications-app")) as running:
        yield running


@pytest.mark.parametrize("credential", list(service_credentials()))
async def test_a_renewal_request_without_the_medications_app_credential_is_refused(
    services: HttpServices, credential: str
) -> None:
    headers, status = service_credentials()[credential]
    request = renewal_requests(1)[0]

    response = await services.renewal.post(
        "/v1/renewals", json=request.body, headers={**headers, "Idempotency-Key": request.key}
    )

    assert response.status_code == status, response.text
    saved = await services.renewal.get(
        f"/v1/renewals/by-idempotency-key/{request.key}",
        headers={"Authorization": f"Bearer {issue_service_token(AUTH)}"},
    )
    assert saved.status_code == 404


async def test_the_medications_app_credential_is_accepted(services: HttpServices) -> None:
    request = renewal_requests(1)[0]
    headers = {
        "Authorization": f"Bearer {issue_service_token(AUTH)}",
        "Idempotency-Key": request.key,
    }

    response = await services.renewal.post("/v1/renewals", json=request.body, headers=headers)

    assert response.status_code == 202, response.text
    saved = await services.renewal.get(
        f"/v1/renewals/by-idempotency-key/{request.key}",
        headers={"Authorization": headers["Authorization"]},
    )
    assert saved.json()["renewal_id"] == response.json()["renewal_id"]
