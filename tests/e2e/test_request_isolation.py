"""One trace per request, always: each service served as in production (uvicorn, rxsm's server
options), hit the way real clients hit it: one keep-alive connection for many requests, bodies far
past uvicorn's 64 KiB read buffer beside small ones, and requests in parallel.

Every answer names its trace in the W3C ``traceresponse`` header; no two requests may share one.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.e2e.conftest import MEDICATIONS_APP, Flow
from tests.e2e.test_renewal_journey import VETERAN, renewal_request
from tests.support import bearer, served_on_a_port

pytestmark = pytest.mark.kafka

LARGE = 200_000
"""Past uvicorn's high-water mark (65,536 bytes): reading pauses, then resumes inside the request."""


def trace_id(response: httpx.Response) -> str:
    """The trace of the request that got ``response`` (``traceresponse``: version-trace-span-flags)."""
    header: str | None = response.headers.get("traceresponse")
    assert header, f"{response.request.method} {response.request.url.path}: no traceresponse"
    return header.split("-")[1]


@asynccontextmanager
async def served(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on a local port with the production server options, and one keep-alive client."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with (
        served_on_a_port(app) as url,
        httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client,
    ):
        yield client


def _sized(size: int) -> dict[str, Any]:
    return renewal_request(sig="X" * size)


def _all_distinct(responses: list[httpx.Response]) -> None:
    ids = [trace_id(response) for response in responses]
    assert all(response.status_code < 500 for response in responses), [
        r.status_code for r in responses
    ]
    assert len(set(ids)) == len(ids), ids


async def test_a_large_renewal_does_not_lend_its_trace_to_the_next_requests(flow: Flow) -> None:
    async with served(flow.apps["renewal"], **MEDICATIONS_APP) as renewal:
        responses = [
            await renewal.post("/v1/renewals", json=_sized(size)) for size in (LARGE, 10, 10)
        ]
        responses.append(await renewal.get("/health"))
    _all_distinct(responses)


async def test_a_large_draft_does_not_lend_its_trace_to_the_next_requests(flow: Flow) -> None:
    new_message = {
        "recipient_id": 1,
        "team_selection": "care_system_picker",
        "category": "OTHER",
        "subject": "Question",
    }
    async with served(flow.apps["messaging"], **bearer(VETERAN)) as messaging:
        responses = [
            await messaging.post("/v1/drafts", json={**new_message, "body": "x" * size})
            for size in (LARGE, 10, 10)
        ]
        responses.append(
            await messaging.get("/v1/renewals/00000000-0000-0000-0000-000000000000/draft")
        )
    _all_distinct(responses)


async def test_a_large_body_to_the_care_team_service_does_not_lend_its_trace(flow: Flow) -> None:
    async with served(flow.apps["careteam"], **bearer(VETERAN)) as careteam:
        responses = [
            await careteam.request("GET", "/v1/care-teams", content=b"x" * LARGE),
            await careteam.get("/v1/care-teams"),
            await careteam.get("/v1/care-teams"),
        ]
    _all_distinct(responses)


async def test_requests_in_parallel_each_have_their_own_trace(flow: Flow) -> None:
    async with served(flow.apps["renewal"], **MEDICATIONS_APP) as renewal:
        pool = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(
            base_url=renewal.base_url, headers=MEDICATIONS_APP, limits=pool, timeout=60
        ) as clients:
            sizes = [LARGE if n % 3 == 0 else 10 for n in range(24)]
            responses = await asyncio.gather(
                *(clients.post("/v1/renewals", json=_sized(size)) for size in sizes)
            )
    _all_distinct(list(responses))
