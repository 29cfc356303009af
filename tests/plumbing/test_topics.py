"""Topics are made with their settings: retention by what they hold (dead letters the longest), and
how many replicas must hold a record before it is acknowledged."""

from uuid import uuid4

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from plumbing.topics import ensure_topics, topic_config
from schemas import topics

pytestmark = pytest.mark.kafka

DAY_MS = 24 * 60 * 60 * 1000


@pytest.mark.parametrize(
    ("replication", "insync", "expected"),
    [(1, None, "1"), (3, None, "2"), (3, 3, "3"), (1, 2, "1")],
)
def test_min_insync_replicas_lets_one_broker_fail_and_never_exceeds_the_replicas(
    replication: int, insync: int | None, expected: str
) -> None:
    config = topic_config(topics.MESSAGES, replication, insync)
    assert config["min.insync.replicas"] == expected


def test_dead_letters_are_kept_longest() -> None:
    kept = {name: int(topic_config(name, 1)["retention.ms"]) for name in topics.ALL}
    assert kept[topics.DEAD_LETTER] == 30 * DAY_MS
    assert max(kept, key=lambda name: kept[name]) == topics.DEAD_LETTER
    retry = topics.retry_topic(topics.CARE_TEAMS, "rxsm-messaging")
    assert int(topic_config(retry, 1)["retention.ms"]) == 7 * DAY_MS


async def test_a_topic_rxsm_creates_has_its_settings_on_the_broker(kafka_bootstrap: str) -> None:
    name = f"rxsm.test.settings.{uuid4().hex[:8]}"
    retry = topics.retry_topic(name, "rxsm-test")
    await ensure_topics(kafka_bootstrap, 2, [name, retry])

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([retry])
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, retry)])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 2
    values = {
        entry["config_names"]: entry["config_value"]
        for entry in response.to_object()["resources"][0]["config_entries"]
    }
    assert values["retention.ms"] == str(7 * DAY_MS)
    assert values["min.insync.replicas"] == "1"
    assert values["cleanup.policy"] == "delete"
