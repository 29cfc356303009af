"""Reading Kafka for the SRE commands: a topic from start to end, and consumer lag."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from plumbing.settings import ServiceSettings


def security() -> dict[str, Any]:
    """The Kafka client security the services use (RXSM_KAFKA_* settings)."""
    return ServiceSettings().kafka_security.for_aiokafka()


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rxsm-cli", **security())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def read_all(bootstrap: str, topic: str) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topic`` up to its current end, without joining a consumer group."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security())
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    yield record
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_json(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    found = []
    async for record in read_all(bootstrap, topic):
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


async def consumer_lag(bootstrap: str, group_prefix: str = "rxsm-") -> list[Lag]:
    """Committed offset, end offset and lag of every partition each rxsm consumer group reads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rxsm-cli", **security())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"rxsm-cli-{uuid4()}", **security()
    )
    await admin.start()
    await consumer.start()
    try:
        groups = sorted(
            group_id
            for group_id, _ in await admin.list_consumer_groups()
            if str(group_id).startswith(group_prefix)
        )
        lags: list[Lag] = []
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(offsets)) if offsets else {}
            lags.extend(
                Lag(group, tp.topic, tp.partition, meta.offset, ends.get(tp, meta.offset))
                for tp, meta in sorted(offsets.items())
            )
        return lags
    finally:
        await consumer.stop()
        await admin.close()
