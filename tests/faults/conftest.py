"""Fixtures of the fault tests: a private broker and the services as processes, per test."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy.engine import URL

from tests.faults.cluster import STATEFUL, Cluster
from tests.faults.postgres import create_database, drop_database, postgres_server

MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MakeCluster]:
    """Start a cluster (``Cluster`` options); whatever it left running is stopped after the test."""
    made: list[Cluster] = []

    async def make(**options: Any) -> Cluster:
        cluster = Cluster(
            tmp_path / f"cluster-{len(made)}",
            pycache=tmp_path_factory.getbasetemp() / "pycache",
            **options,
        )
        made.append(cluster)
        await cluster.start()
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


@pytest.fixture
async def cluster(make_cluster: MakeCluster) -> Cluster:
    """One instance of each service, state in SQLite."""
    return await make_cluster()


@pytest.fixture(scope="session")
def postgres() -> Iterator[URL]:
    """A PostgreSQL server (see tests/faults/postgres.py)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
async def service_databases(postgres: URL) -> AsyncIterator[dict[str, str]]:
    """A fresh PostgreSQL database for each stateful service, shared by all its instances."""
    names = {service: f"rxsm_faults_{service}_{uuid4().hex[:8]}" for service in STATEFUL}
    urls = {service: await create_database(postgres, name) for service, name in names.items()}
    yield urls
    for name in names.values():
        await drop_database(postgres, name)
