"""GET /ready: the service can do its work. The database answers, the broker is connected and the
cluster answers, the flag provider is READY; a 503 in the one Problem shape names each part that is not.
GET /health stays liveness: the process serves, whatever its dependencies do."""

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from localkafka import free_port
from plumbing.broker import make_broker
from plumbing.database import make_engine
from plumbing.flags import DEFAULT_FILE, FeatureFlags
from plumbing.http import READY_TIMEOUT_SECONDS, service_app
from plumbing.identity import ServiceIdentity
from plumbing.settings import ServiceSettings
from schemas.vocabulary import Tool
from tests.support import eventually

IDENTITY = ServiceIdentity("readiness-probe", Tool.SM)
ALL_OK = {"database": "ok", "kafka": "ok", "flags": "ok"}
SECRET = "s3cret-db-password"


@pytest.fixture
def flag_path(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    shutil.copy(DEFAULT_FILE, path)
    return path


@pytest.fixture
def flags(flag_path: Path) -> Iterator[FeatureFlags]:
    evaluator = FeatureFlags(flag_path, poll_ms=100)
    yield evaluator
    evaluator.close()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/db/probe.db")
    yield engine
    await engine.dispose()


def probe_app(bootstrap: str, engine: AsyncEngine, flags: FeatureFlags) -> FastAPI:
    """plumbing's service app with no consumers (it joins no consumer group), a database and flags."""
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    tracing = TracerProvider()
    broker = make_broker(IDENTITY, settings, tracing)
    return service_app(
        IDENTITY,
        settings,
        broker,
        tracing,
        title="t",
        description="d",
        database=engine,
        flags=flags,
    )


@asynccontextmanager
async def client_of(app: FastAPI, start: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app``, started (its broker connected) unless ``start`` is False."""
    if not start:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            yield client
        return
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            yield client


async def answer_with(client: httpx.AsyncClient, status: int) -> dict[str, Any]:
    """``/ready``'s body once it answers ``status`` (the flag provider polls its file)."""

    async def probe() -> dict[str, Any] | None:
        answer = await client.get("/ready")
        return answer.json() if answer.status_code == status else None

    return await eventually(probe, within=10)


def assert_not_ready(body: dict[str, Any], part: str) -> None:
    """The Problem shape naming ``part`` as the one check down, the others ok."""
    assert body["code"] == "not_ready"
    assert body["checks"][part] != "ok"
    assert {name: state for name, state in body["checks"].items() if name != part} == {
        name: "ok" for name in ALL_OK if name != part
    }
    assert body["message"].startswith(f"Not ready: {part}: "), body["message"]


@pytest.mark.kafka
async def test_ready_when_the_database_kafka_and_the_flags_answer(
    kafka_bootstrap: str, sqlite: AsyncEngine, flags: FeatureFlags
) -> None:
    async with client_of(probe_app(kafka_bootstrap, sqlite, flags)) as client:
        answer = await client.get("/ready")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "service": IDENTITY.name, "checks": ALL_OK}


def break_file(path: Path, breakage: str) -> None:
    if breakage == "deleted":
        path.unlink()
    else:
        path.write_text('{"flags": {')


@pytest.mark.kafka
@pytest.mark.parametrize("breakage", ["not JSON", "deleted"])
async def test_a_broken_flag_file_makes_the_service_not_ready_until_it_is_fixed(
    kafka_bootstrap: str, sqlite: AsyncEngine, flags: FeatureFlags, flag_path: Path, breakage: str
) -> None:
    async with client_of(probe_app(kafka_bootstrap, sqlite, flags)) as client:
        await answer_with(client, 200)
        break_file(flag_path, breakage)

        body = await answer_with(client, 503)
        assert_not_ready(body, "flags")
        assert "ERROR" in body["checks"]["flags"]
        assert (await client.get("/health")).status_code == 200, "alive, only not ready"

        shutil.copy(DEFAULT_FILE, flag_path)
        assert (await answer_with(client, 200))["checks"] == ALL_OK


@pytest.mark.kafka
async def test_a_database_folder_gone_makes_the_service_not_ready(
    kafka_bootstrap: str, tmp_path: Path, flags: FeatureFlags
) -> None:
    """SQLite whose folder (the data volume) is gone: it cannot open its file."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/volume/probe.db")
    shutil.rmtree(tmp_path / "volume")
    try:
        async with client_of(probe_app(kafka_bootstrap, engine, flags)) as client:
            answer = await client.get("/ready")
    finally:
        await engine.dispose()
    assert answer.status_code == 503
    assert_not_ready(answer.json(), "database")
    assert str(tmp_path) not in answer.text


@pytest.mark.kafka
async def test_a_database_server_that_refuses_makes_the_service_not_ready_without_naming_it(
    kafka_bootstrap: str, flags: FeatureFlags
) -> None:
    """PostgreSQL on a port nobody listens on; the answer says why, never the URL or its password."""
    engine = make_engine(f"postgresql+asyncpg://rxsm:{SECRET}@127.0.0.1:{free_port()}/rxsm")
    try:
        async with client_of(probe_app(kafka_bootstrap, engine, flags)) as client:
            answer = await client.get("/ready")
    finally:
        await engine.dispose()
    assert answer.status_code == 503
    assert_not_ready(answer.json(), "database")
    assert SECRET not in answer.text
    assert "postgresql" not in answer.text


@pytest.mark.kafka
async def test_a_database_that_never_answers_is_given_up_on_within_the_timeout(
    kafka_bootstrap: str, flags: FeatureFlags
) -> None:
    """A server that accepts the connection and says nothing: /ready answers all the same, at once."""

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3 * READY_TIMEOUT_SECONDS)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = make_engine(f"postgresql+asyncpg://rxsm@127.0.0.1:{port}/rxsm")
    try:
        async with client_of(probe_app(kafka_bootstrap, engine, flags)) as client:
            started = asyncio.get_running_loop().time()
            answer = await client.get("/ready")
            took = asyncio.get_running_loop().time() - started
    finally:
        server.close()
        await engine.dispose()
    assert answer.status_code == 503
    assert_not_ready(answer.json(), "database")
    assert answer.json()["checks"]["database"] == f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    assert took < READY_TIMEOUT_SECONDS + 1


async def test_a_service_whose_broker_is_not_connected_is_not_ready(
    sqlite: AsyncEngine, flags: FeatureFlags
) -> None:
    """Its broker never started (no broker at that address): alive, not ready, Kafka named."""
    app = probe_app(f"127.0.0.1:{free_port()}", sqlite, flags)
    async with client_of(app, start=False) as client:
        ready = await client.get("/ready")
        health = await client.get("/health")
    assert health.status_code == 200
    assert ready.status_code == 503
    assert_not_ready(ready.json(), "kafka")


def test_ready_is_documented_with_its_not_ready_problem(flags: FeatureFlags) -> None:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    responses = probe_app("127.0.0.1:9092", engine, flags).openapi()["paths"]["/ready"]["get"][
        "responses"
    ]
    assert set(responses) >= {"200", "503"}
    schema = responses["503"]["content"]["application/json"]["schema"]["$ref"]
    assert schema.endswith("/NotReady")
