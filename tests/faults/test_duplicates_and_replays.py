"""Duplicated events and a replay from offset 0 have no second effect.

Every request is published twice (the Medications app retried), then, once the flow settled, every
record of every consumed topic is published again (producers that retried after a lost acknowledgement),
and every consumer group is rewound to offset 0 (an operator's replay). The services process it all
again: the same renewals, outcomes, drafts and messages, nothing new.
"""

import pytest

from schemas import topics
from tests.faults.cluster import Cluster
from tests.faults.flow import Traffic, publish_requests, read_flow, renewal_requests, verify
from tests.faults.kafka_tools import republish, rewind_groups, until_caught_up

pytestmark = pytest.mark.faults

RENEWALS = 200
CONSUMED = (
    topics.RENEWAL_REQUESTS,
    topics.RENEWAL_REQUESTED,
    topics.CARE_TEAMS,
    topics.DRAFTS,
    topics.MESSAGES,
)


async def test_duplicates_and_a_replay_from_offset_zero_change_nothing(cluster: Cluster) -> None:
    requests = renewal_requests(RENEWALS)
    async with Traffic(cluster, requests) as traffic:
        await publish_requests(cluster.bootstrap, requests, per_second=30, copies=2)
        await traffic.until_finished(RENEWALS)
        traffic.note("every request published twice, every renewal finished")
    first = await verify(cluster, traffic)
    first.assert_exactly_once()
    before = await read_flow(cluster.bootstrap)

    duplicated = await republish(cluster.bootstrap, CONSUMED)
    await until_caught_up(cluster.bootstrap)
    await cluster.stop_services()
    rewound = await rewind_groups(cluster.bootstrap)
    await cluster.start_services()
    await until_caught_up(cluster.bootstrap)
    print(f"duplicated {duplicated} records; rewound {', '.join(rewound)} to offset 0")

    after = await verify(cluster, traffic)
    after.assert_exactly_once()
    replayed = await read_flow(cluster.bootstrap)
    assert replayed.renewals == before.renewals
    assert replayed.outcomes == before.outcomes
    assert replayed.drafts == before.drafts
    assert replayed.messages == before.messages
    assert after.redelivered > first.redelivered
