"""The Kafka broker crashes and comes back mid-run: the services recover by themselves.

No service process is restarted. Requests keep coming over HTTP (saved with their event in the
renewal service's outbox, relayed once the broker is back) and over Kafka (the Medications app's
producer retries), and drafts keep being sent (each send's event waits in the messaging outbox).
"""

import asyncio

import pytest

from tests.faults.cluster import Cluster
from tests.faults.flow import Traffic, post_requests, publish_requests, renewal_requests, verify

pytestmark = pytest.mark.faults

RENEWALS = 300


async def test_consumers_and_producers_recover_from_a_broker_restart_without_a_process_restart(
    cluster: Cluster,
) -> None:
    requests = renewal_requests(RENEWALS)
    processes = {i.name: i.process for group in cluster.instances.values() for i in group}
    async with Traffic(cluster, requests) as traffic:
        seeding = asyncio.gather(
            publish_requests(cluster.bootstrap, requests[::2], per_second=12),
            post_requests(cluster, requests[1::2], per_second=12),
        )
        await traffic.until_finished(RENEWALS // 4)
        await cluster.kill_broker()
        traffic.note("killed the broker (SIGKILL)")
        await asyncio.sleep(3)
        await cluster.start_broker()
        traffic.note("the broker serves again")
        await seeding
        await traffic.until_finished(RENEWALS, within=240)
        traffic.note("every renewal finished")
    assert {i.name: i.process for group in cluster.instances.values() for i in group} == processes
    assert all(i.running for group in cluster.instances.values() for i in group)
    counts = await verify(cluster, traffic)
    counts.assert_exactly_once()
