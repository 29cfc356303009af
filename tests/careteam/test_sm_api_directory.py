"""The SM API directory against a small SM-compatible HTTP server on 127.0.0.1, and its time bounds."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from localkafka import free_port
from services.careteam.adapters.demo import DEMO_DIRECTORY, DemoDirectory
from services.careteam.adapters.directory import BoundedDirectory, DirectoryBudget, DirectoryError
from services.careteam.adapters.sm_api import VETERAN_HEADER, SmApiDirectory, directory_client
from tests.support import eventually

MIXED = "1012667122V019349"
BASE = "/v1/sm/patient"


@dataclass
class FakeSm:
    """SM's patient API for the demo Veterans; ``script`` makes ``alltriageteams`` misbehave."""

    script: list[str] = field(default_factory=list)
    calls: list[Request] = field(default_factory=list)

    def veteran(self, request: Request) -> dict[str, Any]:
        veterans: dict[str, dict[str, Any]] = json.loads(DEMO_DIRECTORY.read_text())["veterans"]
        return veterans[request.headers[VETERAN_HEADER]]

    async def all_triage_teams(self, request: Request) -> Response:
        self.calls.append(request)
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "slow":
            await asyncio.sleep(2)
        if behaviour.isdigit():
            return PlainTextResponse("unavailable", status_code=int(behaviour))
        if behaviour == "not json":
            return PlainTextResponse("<html>maintenance</html>")
        if behaviour == "wrong shape":
            return JSONResponse({"data": []})
        return JSONResponse(self.veteran(request)["allTriageTeams"])

    async def sent_folder(self, request: Request) -> Response:
        today = datetime.now(UTC).replace(hour=15, minute=4, second=5, microsecond=0)
        return JSONResponse(
            [
                {
                    "id": 7000 + index,
                    "recipientId": sent["recipientId"],
                    "sentDate": (today - timedelta(days=sent["sentDaysAgo"])).isoformat(),
                    "subject": "not read",
                    "body": "not read",
                }
                for index, sent in enumerate(self.veteran(request).get("sentMessages", []))
            ]
        )


@dataclass
class Server:
    url: str
    sm: FakeSm


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    sm = FakeSm()
    app = Starlette(
        routes=[
            Route(f"{BASE}/alltriageteams", sm.all_triage_teams),
            Route(f"{BASE}/folder/-1/message/page/1/pageSize/250", sm.sent_folder),
        ]
    )
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=1
    )
    uvicorn_server = uvicorn.Server(config)
    serving = asyncio.create_task(uvicorn_server.serve())

    async def started() -> bool | None:
        return uvicorn_server.started or None

    await eventually(started, within=10)
    yield Server(f"http://127.0.0.1:{port}{BASE}", sm)
    uvicorn_server.should_exit = True
    await serving


@pytest.fixture
def sm(server: Server) -> FakeSm:
    server.sm.script.clear()
    server.sm.calls.clear()
    return server.sm


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with directory_client(server.url, timeout_seconds=0.3) as client:
        yield client


async def test_the_api_gives_the_same_care_teams_as_the_demo_directory(
    sm: FakeSm, client: httpx.AsyncClient
) -> None:
    from_api = await SmApiDirectory(client).care_teams(MIXED)
    from_demo = await DemoDirectory().care_teams(MIXED)

    assert from_api == from_demo
    assert {g.oh_triage_group for g in from_api.groups} == {True, False}
    [request] = sm.calls
    assert request.headers[VETERAN_HEADER] == MIXED
    assert MIXED not in str(request.url), "the Veteran's id stays out of the URL"


@pytest.mark.parametrize(
    ("behaviour", "transient"),
    [
        ("503", True),
        ("500", True),
        ("429", True),
        ("slow", True),
        ("404", False),
        ("403", False),
        ("not json", False),
        ("wrong shape", False),
    ],
)
async def test_directory_failures_say_whether_a_retry_may_help(
    sm: FakeSm, client: httpx.AsyncClient, behaviour: str, transient: bool
) -> None:
    sm.script.append(behaviour)
    with pytest.raises(DirectoryError) as failed:
        await SmApiDirectory(client).care_teams(MIXED)
    assert failed.value.transient is transient
    assert MIXED not in str(failed.value)


async def test_a_directory_that_is_not_listening_is_a_transient_error() -> None:
    async with directory_client(f"http://127.0.0.1:{free_port()}{BASE}", 0.3) as nowhere:
        with pytest.raises(DirectoryError) as failed:
            await SmApiDirectory(nowhere).care_teams(MIXED)
    assert failed.value.transient


def bounded(client: httpx.AsyncClient, **budget: Any) -> BoundedDirectory:
    defaults: dict[str, Any] = {"attempts": 3, "backoff_seconds": 0.01, "deadline_seconds": 5.0}
    return BoundedDirectory(SmApiDirectory(client), DirectoryBudget(**{**defaults, **budget}))


async def test_transient_failures_are_retried_until_the_directory_answers(
    sm: FakeSm, client: httpx.AsyncClient
) -> None:
    sm.script.extend(["503", "slow"])
    care_teams = await bounded(client, attempts=3).care_teams(MIXED)
    assert len(care_teams.groups) == 5
    assert len(sm.calls) == 3


async def test_retries_stop_after_the_last_attempt(sm: FakeSm, client: httpx.AsyncClient) -> None:
    sm.script.extend(["503"] * 5)
    with pytest.raises(DirectoryError, match="503"):
        await bounded(client, attempts=3).care_teams(MIXED)
    assert len(sm.calls) == 3


async def test_a_refusal_is_not_retried(sm: FakeSm, client: httpx.AsyncClient) -> None:
    sm.script.extend(["404", "404"])
    with pytest.raises(DirectoryError, match="404"):
        await bounded(client, attempts=3).care_teams(MIXED)
    assert len(sm.calls) == 1


async def test_the_deadline_bounds_the_whole_wait_whatever_the_attempts(
    sm: FakeSm, client: httpx.AsyncClient
) -> None:
    sm.script.extend(["slow"] * 10)
    started = time.monotonic()
    with pytest.raises(DirectoryError, match=r"no answer within 0\.8 s"):
        await bounded(client, attempts=10, deadline_seconds=0.8).care_teams(MIXED)
    assert 0.75 < time.monotonic() - started < 1.3
    assert 2 <= len(sm.calls) < 10
