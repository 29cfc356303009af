"""Service databases for the migration and retention tests: SQLite files, and PostgreSQL databases on
a throwaway server (localpostgres: ``RXSM_TEST_DATABASE_URL``'s, or Debian's PostgreSQL started here).

Without PostgreSQL the PostgreSQL cases skip, unless ``RXSM_REQUIRE_TOOLS`` is set (CI), which makes
them fail.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import localpostgres
from plumbing.database import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using a database runs on both backends."""
    return str(request.param)


@pytest.fixture(scope="session")
def postgres() -> Iterator[URL]:
    try:
        with localpostgres.postgres_server() as server:
            yield server
    except localpostgres.PostgresNotInstalled as missing:
        if os.environ.get("RXSM_REQUIRE_TOOLS"):
            pytest.fail(f"PostgreSQL is required (RXSM_REQUIRE_TOOLS is set): {missing}")
        pytest.skip(f"{missing}; RXSM_REQUIRE_TOOLS makes this a failure")


@pytest.fixture
async def database_url(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> AsyncIterator[str]:
    """An empty database on ``backend``."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/service.db"
        return
    server: URL = request.getfixturevalue("postgres")
    name = f"rxsm_migrations_{uuid.uuid4().hex[:12]}"
    url = await localpostgres.create_database(server, name)
    try:
        yield url
    finally:
        await localpostgres.drop_database(server, name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url)
    try:
        yield made
    finally:
        await made.dispose()
