"""Fixtures of the fault tests: a private broker and the services as processes, per test."""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.cluster import Cluster

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
