"""Property: whatever a client sends to the HTTP APIs, a bad request gets a 4xx, never a 500.

Bodies are arbitrary JSON, raw bytes (not JSON, not UTF-8), or a valid body with one field replaced by
arbitrary JSON or left out; headers, path ids, query values and bearer subjects are arbitrary text.
Valid ones may succeed. The services run in this process without a broker (tests/faults/inprocess.py).

And as real clients hit them: served by uvicorn as in production, random bodies of random sizes on one
keep-alive connection per service, each answer 2xx or 4xx in the one error shape, each in a trace of
its own.
"""

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plumbing.auth import AuthSettings, issue_service_token
from tests.faults.flow import VISTA_VETERAN, renewal_requests
from tests.faults.inprocess import HttpServices, http_services
from tests.support import bearer, served_on_a_port

EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VISTA_TEAM = 1013155
"""The demo VistA Veteran's allowed team."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=300
)


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Arbitrary JSON, arbitrary bytes, and ``valid`` with one (nested) field replaced or removed."""
    paths = list(_paths(valid))

    def mutated(path: tuple[str, ...], value: Any, remove: bool) -> bytes:
        document = json.loads(json.dumps(valid))
        *parents, last = path
        holder = document
        for part in parents:
            holder = holder[part]
        if remove:
            del holder[last]
        else:
            holder[last] = value
        return json.dumps(document).encode()

    return st.one_of(
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
        st.builds(mutated, st.sampled_from(paths), json_values, st.booleans()),
    )


def _paths(document: dict[str, Any], prefix: tuple[str, ...] = ()) -> Any:
    for key, value in document.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HttpServices]:
    async with http_services(tmp_path_factory.mktemp("http-properties")) as running:
        yield running


@pytest.fixture(scope="module")
async def draft_id(services: HttpServices) -> str:
    """A general new message of the demo VistA Veteran's."""
    response = await services.messaging.post(
        "/v1/drafts", json=new_message(), headers=bearer(VISTA_VETERAN)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def new_message() -> dict[str, Any]:
    return {
        "recipient_id": VISTA_TEAM,
        "team_selection": "recent",
        "category": "OTHER",
        "subject": "A question",
        "body": "When is my next appointment?",
        "platform": "web",
    }


def assert_handled(status: int, text: str) -> None:
    event(f"HTTP {status}")
    assert status < 500, f"{status}: {text}"


MEDICATIONS_APP = {"Authorization": f"Bearer {issue_service_token(AuthSettings())}"}
JSON = {"content-type": "application/json"}


@EXAMPLES
@given(body=bodies(renewal_requests(1)[0].body), key=st.none() | header_text)
async def test_a_renewal_request_is_answered_202_or_4xx(
    services: HttpServices, body: bytes, key: str | None
) -> None:
    headers = {**MEDICATIONS_APP, **JSON, **({"Idempotency-Key": key} if key else {})}
    response = await services.renewal.post("/v1/renewals", content=body, headers=headers)
    assert_handled(response.status_code, response.text)
    assert response.status_code in (202, 400, 422), response.text


@EXAMPLES
@given(body=bodies(new_message()))
async def test_a_new_message_is_answered_201_or_4xx(services: HttpServices, body: bytes) -> None:
    response = await services.messaging.post(
        "/v1/drafts", content=body, headers={**bearer(VISTA_VETERAN), **JSON}
    )
    assert_handled(response.status_code, response.text)


@EXAMPLES
@given(body=bodies({**new_message(), "team_selection": "suggested"}))
async def test_a_draft_change_is_answered_200_or_4xx(
    services: HttpServices, draft_id: str, body: bytes
) -> None:
    response = await services.messaging.put(
        f"/v1/drafts/{draft_id}", content=body, headers={**bearer(VISTA_VETERAN), **JSON}
    )
    assert_handled(response.status_code, response.text)


@EXAMPLES
@given(draft=st.text(min_size=1, max_size=60), subject=header_text)
async def test_any_draft_id_or_subject_is_answered_without_a_server_error(
    services: HttpServices, draft: str, subject: str
) -> None:
    segment = quote(draft, safe="")
    for method, path in (
        ("GET", f"/v1/drafts/{segment}"),
        ("DELETE", f"/v1/drafts/{segment}"),
        ("POST", f"/v1/drafts/{segment}/send"),
        ("GET", f"/v1/renewals/{segment}/draft"),
        ("GET", f"/v1/renewals/{segment}/care-teams"),
    ):
        response = await services.messaging.request(method, path, headers=bearer(subject))
        assert_handled(response.status_code, response.text)
        assert not response.is_success, (method, path, response.text)


@EXAMPLES
@given(care_system=st.none() | st.text(max_size=20), subject=header_text)
async def test_a_care_team_listing_is_answered_200_or_4xx(
    services: HttpServices, care_system: str | None, subject: str
) -> None:
    params = {} if care_system is None else {"care_system": care_system}
    response = await services.careteam.get("/v1/care-teams", params=params, headers=bearer(subject))
    assert_handled(response.status_code, response.text)


@EXAMPLES
@given(authorization=header_text)
async def test_any_authorization_header_but_a_valid_token_is_401(
    services: HttpServices, draft_id: str, authorization: str
) -> None:
    for client, method, path in (
        (services.messaging, "GET", f"/v1/drafts/{draft_id}"),
        (services.careteam, "GET", "/v1/care-teams"),
        (services.renewal, "POST", "/v1/renewals"),
    ):
        response = await client.request(method, path, headers={"Authorization": authorization})
        assert response.status_code in (401, 403), (path, response.status_code, response.text)


@dataclass
class Served:
    """The three services on local ports as in production (uvicorn, rxsm's server options), and one
    keep-alive connection to each."""

    clients: dict[str, httpx.AsyncClient]
    trace_ids: set[str]


@pytest.fixture(scope="module")
async def served(services: HttpServices) -> AsyncIterator[Served]:
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in services.apps.items():
            url = await stack.enter_async_context(served_on_a_port(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=60,
                )
            )
        yield Served(clients, set())


ENDPOINTS = (
    ("renewal", "POST", "/v1/renewals"),
    ("messaging", "POST", "/v1/drafts"),
    ("messaging", "PUT", "/v1/drafts/{draft}"),
    ("careteam", "GET", "/v1/care-teams"),
)
SIZES = st.one_of(
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=60_000, max_value=300_000),
    st.integers(min_value=1_000_000, max_value=12_000_000),
)
"""Small bodies, bodies past uvicorn's 64 KiB read buffer, and bodies past every limit."""


def sized_body(kind: str, size: int, endpoint: str) -> bytes:
    """A body of about ``size`` bytes: a valid request with one text field that long, the same text
    as raw bytes, or a JSON document that is cut short."""
    valid: dict[str, Any] = (
        renewal_requests(1)[0].body if endpoint == "/v1/renewals" else new_message()
    )
    text = "x" * size
    if kind == "long field" and endpoint == "/v1/renewals":
        valid["prescription"]["sig"] = text
    elif kind == "long field":
        valid["body"] = text
    if kind == "raw bytes":
        return text.encode()
    encoded = json.dumps(valid).encode()
    return encoded[: max(len(encoded) // 2, 1)] if kind == "cut short" else encoded


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(ENDPOINTS),
            st.sampled_from(("long field", "raw bytes", "cut short")),
            SIZES,
        ),
        min_size=2,
        max_size=5,
    )
)
async def test_random_bodies_on_one_keep_alive_connection_each_get_a_shaped_answer_and_own_trace(
    served: Served, draft_id: str, requests: list[tuple[tuple[str, str, str], str, int]]
) -> None:
    for (service, method, path), kind, size in requests:
        headers = {**JSON, **(MEDICATIONS_APP if service == "renewal" else bearer(VISTA_VETERAN))}
        response = await served.clients[service].request(
            method,
            path.format(draft=draft_id),
            content=sized_body(kind, size, path) if method != "GET" else b"x" * size,
            headers=headers,
        )
        assert_handled(response.status_code, response.text[:300])
        if response.status_code >= 400:
            problem = response.json()
            assert isinstance(problem["code"], str) and isinstance(problem["message"], str)
            assert "detail" not in problem
        trace = response.headers["traceresponse"].split("-")[1]
        assert trace not in served.trace_ids, f"{method} {path} answered in an earlier trace"
        served.trace_ids.add(trace)
