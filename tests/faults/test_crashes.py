"""kill -9 of a service while a batch of renewals flows: restarted, it loses and doubles nothing.

The kill lands mid-batch, with requests still arriving and drafts being sent: whatever the killed
process had consumed but not committed is consumed again, whatever it had committed but not published
is published from its outbox, and a send cut off mid-way is retried under the same idempotency key.
"""

import asyncio

import pytest

from tests.faults.cluster import SERVICES, Cluster
from tests.faults.flow import Traffic, publish_requests, renewal_requests, verify

pytestmark = pytest.mark.faults

RENEWALS = 300


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
    cluster: Cluster, service: str
) -> None:
    requests = renewal_requests(RENEWALS)
    async with Traffic(cluster, requests) as traffic:
        seeding = asyncio.create_task(publish_requests(cluster.bootstrap, requests, per_second=25))
        await traffic.until_finished(RENEWALS // 4)
        await cluster.kill(service)
        traffic.note(f"killed {service} (SIGKILL)")
        await asyncio.sleep(1)
        await cluster.restart(service)
        traffic.note(f"{service} serves again")
        await seeding
        await traffic.until_finished(RENEWALS)
        traffic.note("every renewal finished")
    counts = await verify(cluster, traffic)
    counts.assert_exactly_once()
