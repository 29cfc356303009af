"""One error body across the three services: ``{"code", "message"}`` (and ``errors``, each with the
offending field's name, for an invalid request), whatever refused the request: the token check,
FastAPI's own parsing, a service rule, an unknown route. Documented in each service's OpenAPI."""

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.e2e.conftest import Flow
from tests.e2e.test_renewal_journey import VETERAN, renewal_request
from tests.support import bearer

pytestmark = pytest.mark.kafka

SERVICES = ("renewal", "careteam", "messaging")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert "detail" not in body
    return body


def anonymous(flow: Flow, service: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=flow.apps[service])
    return httpx.AsyncClient(transport=transport, base_url=f"http://{service}")


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("renewal", "POST", "/v1/renewals"),
        ("renewal", "GET", f"/v1/renewals/{uuid4()}"),
        ("careteam", "GET", "/v1/care-teams"),
        ("messaging", "POST", "/v1/drafts"),
        ("messaging", "GET", f"/v1/drafts/{uuid4()}"),
    ],
)
async def test_no_token_is_a_401_problem_with_a_bearer_challenge(
    flow: Flow, service: str, method: str, path: str
) -> None:
    async with anonymous(flow, service) as client:
        response = await client.request(method, path)
    body = assert_problem(response, 401, "unauthorized")
    assert "Authorization: Bearer" in body["message"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_malformed_json_is_a_400_that_names_the_body_not_a_byte_offset(flow: Flow) -> None:
    broken = b'{"veteranId": "1012845331V153043", "prescription": {'
    renewal = await flow.renewal.post(
        "/v1/renewals", content=broken, headers={"Content-Type": "application/json"}
    )
    draft = await flow.messaging.post(
        "/v1/drafts",
        content=b"{not json",
        headers={**bearer(VETERAN), "Content-Type": "application/json"},
    )
    for response in (renewal, draft):
        body = assert_problem(response, 400, "malformed_json")
        assert body["message"].startswith("Send a JSON body")
        assert not any(char.isdigit() for char in body["message"]), body["message"]


async def test_an_invalid_field_is_a_422_that_names_the_field(flow: Flow) -> None:
    request = renewal_request()
    request["prescription"]["refillRemaining"] = "several"
    response = await flow.renewal.post("/v1/renewals", json=request)
    body = assert_problem(response, 422, "invalid_request")
    assert [e["field"] for e in body["errors"]] == ["prescription.refillRemaining"]


async def test_an_unknown_renewal_is_a_404_problem(flow: Flow) -> None:
    response = await flow.renewal.get(f"/v1/renewals/{uuid4()}")
    assert_problem(response, 404, "renewal_not_found")


@pytest.mark.parametrize("service", SERVICES)
async def test_an_unknown_route_is_a_404_problem(flow: Flow, service: str) -> None:
    async with anonymous(flow, service) as client:
        response = await client.get("/v2/nothing-here")
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("service", SERVICES)
async def test_openapi_documents_the_problem_answers_of_every_v1_route(
    flow: Flow, service: str
) -> None:
    async with anonymous(flow, service) as client:
        document = (await client.get("/openapi.json")).json()
    problem = document["components"]["schemas"]["Problem"]
    assert {"code", "message"} <= set(problem["required"])
    routes = [
        (path, method, operation)
        for path, operations in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    ]
    assert routes
    for path, method, operation in routes:
        for status in ("400", "401", "422"):
            documented = operation["responses"].get(status)
            assert documented, f"{service} {method.upper()} {path}: {status} undocumented"
            schema = documented["content"]["application/json"]["schema"]["$ref"]
            assert schema.rsplit("/", 1)[-1] in {"Problem", "RenewalProblem"}, schema
