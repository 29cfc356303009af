"""Two instances of each service in one consumer group, their state in one PostgreSQL: one instance of
each stops mid-run (SIGTERM, as a rolling restart does), its partitions move to the other, and nothing
is lost or doubled. Requests and sends are spread over both instances while both run."""

import asyncio

import pytest

from tests.faults.cluster import SERVICES
from tests.faults.conftest import MakeCluster
from tests.faults.flow import Traffic, post_requests, publish_requests, renewal_requests, verify

pytestmark = pytest.mark.faults

RENEWALS = 200


async def test_an_instance_of_each_service_stopping_mid_run_moves_its_work_to_the_other(
    service_databases: dict[str, str], make_cluster: MakeCluster
) -> None:
    cluster = await make_cluster(instances=2, database_urls=service_databases)
    requests = renewal_requests(RENEWALS)
    async with Traffic(cluster, requests) as traffic:
        seeding = asyncio.gather(
            publish_requests(cluster.bootstrap, requests[::2], per_second=10),
            post_requests(cluster, requests[1::2], per_second=10),
        )
        await traffic.until_finished(RENEWALS // 3)
        await asyncio.gather(*(cluster.instance(service, 1).terminate() for service in SERVICES))
        traffic.note("stopped the second instance of each service (SIGTERM): a rebalance")
        await seeding
        await traffic.until_finished(RENEWALS, within=240)
        traffic.note("every renewal finished")
    counts = await verify(cluster, traffic)
    counts.assert_exactly_once()
