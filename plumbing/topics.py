"""Creating rxsm's topics before anything subscribes, and waiting until the broker serves them.

A consumer started before its topics' metadata has spread, or before the group coordinator exists (a
new broker creates ``__consumer_offsets`` on the first group lookup), logs errors for what is only a
start: ``ensure_topics`` waits those out, so a normal start logs no ERROR line.
"""

import asyncio
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from plumbing.kafka_security import KafkaSecurity
from schemas import topics

READY_WITHIN_SECONDS = 60.0
POLL_SECONDS = 0.2


class TopicsNotReady(RuntimeError):
    """The broker did not serve the topics or the consumer groups' coordinator in time."""


def topic_name(topic: Any) -> str:
    """A topic's name, whether given as a string or as a FastStream ``Topic``."""
    return topic if isinstance(topic, str) else str(topic.name)


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    extra: Iterable[Any] = (),
    replication: int = 1,
    security: KafkaSecurity | None = None,
    groups: Iterable[str] = (),
    within: float = READY_WITHIN_SECONDS,
    min_insync_replicas: int | None = None,
) -> None:
    """Create every rxsm topic (and ``extra`` ones) not there yet, with ``topic_config``; existing
    ones are left alone. Returns once each topic has a leader for every partition and each of
    ``groups`` has a coordinator."""
    names = list(dict.fromkeys([*topics.ALL, *(topic_name(t) for t in extra)]))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="rxsm-admin",
        **(security or KafkaSecurity()).for_aiokafka(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs=topic_config(name, replication, min_insync_replicas),
            )
            for name in names
            if name not in existing
        ]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another service created them first
                await admin.create_topics(missing)
        deadline = asyncio.get_running_loop().time() + within
        while not await _served(admin, names, list(groups)):
            if asyncio.get_running_loop().time() > deadline:
                raise TopicsNotReady(f"Kafka did not serve rxsm's topics within {within:.0f} s")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await admin.close()


def topic_config(
    name: str, replication: int, min_insync_replicas: int | None = None
) -> dict[str, str]:
    """A topic's settings: its retention (schemas.topics), and how many replicas must hold a record
    before ``acks=all`` answers (default: min(2, replication), so one broker may fail)."""
    insync = min_insync_replicas or min(2, replication)
    return {
        "retention.ms": str(topics.retention_days(name) * topics.DAY_MS),
        "min.insync.replicas": str(min(insync, replication)),
        "cleanup.policy": "delete",
    }


async def _served(admin: AIOKafkaAdminClient, names: list[str], groups: list[str]) -> bool:
    """Every topic known with a leader for each partition, and every group's coordinator found."""
    described = {t["topic"]: t for t in await admin.describe_topics(names)}
    for name in names:
        topic = described.get(name)
        if topic is None or topic["error_code"] != 0 or not topic["partitions"]:
            return False
        if any(p["error_code"] != 0 or p["leader"] < 0 for p in topic["partitions"]):
            return False
    for group in groups:
        try:
            await admin.find_coordinator(group)
        except KafkaError:
            return False
    return True
