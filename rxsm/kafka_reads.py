"""Reading Kafka for the SRE commands: a topic from start to end, consumer groups and their lag."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeGroupsRequest_v1, DescribeGroupsRequest_v2
from aiokafka.protocol.api import Request

from plumbing.deadletter import RETRY_GROUP_SUFFIX
from plumbing.settings import ServiceSettings
from schemas.topics import retry_topic


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


async def kept_from(bootstrap: str, topic: str) -> datetime | None:
    """From when Kafka still keeps every record of ``topic``: None when it keeps all it was ever
    given (every partition begins at offset 0), else the time of the latest first record kept."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:
        return None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security())
    await consumer.start()
    try:
        beginnings = await consumer.beginning_offsets(partitions)
        cut = [tp for tp in partitions if beginnings[tp] > 0]
        if not cut:
            return None
        firsts = await consumer.offsets_for_times({tp: 0 for tp in cut})
        kept = [found.timestamp for found in firsts.values() if found is not None]
        return datetime.fromtimestamp(max(kept) / 1000, UTC) if kept else datetime.now(UTC)
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
    """Committed offset, end offset and lag of every partition each rxsm consumer group has committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rxsm-cli", **security())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **security())
    await admin.start()
    await consumer.start()
    try:
        groups = sorted(
            group_id
            for group_id, *_ in await admin.list_consumer_groups()
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


@dataclass(frozen=True)
class GroupPartition:
    """One partition a consumer group reads (or will read), and how far behind it is."""

    topic: str
    partition: int
    committed: int | None
    """None: the group has committed no offset here yet."""
    end: int
    start: int = 0
    """The partition's first offset: where a group with nothing committed begins (rxsm's consumers
    reset to the earliest offset)."""

    @property
    def lag(self) -> int:
        return max(self.end - (self.start if self.committed is None else self.committed), 0)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group as the broker describes it, with every partition it reads."""

    group: str
    state: str
    members: int
    partitions: list[GroupPartition] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(partition.lag for partition in self.partitions)


class _DescribeGroups(Request[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]):  # type: ignore[misc]
    """DescribeGroups at v1/v2 only: aiokafka 0.14 decodes the v3 answer (which Kafka 4 sends) with the
    v2 schema, without its ``authorized_operations`` field, and fails on every group."""

    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(
        self, request_struct_class: type[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]
    ) -> DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2:
        return request_struct_class(self._groups)


@dataclass(frozen=True)
class _Described:
    state: str
    members: int
    assigned: frozenset[TopicPartition]
    subscribed: frozenset[str]


async def _describe(admin: AIOKafkaAdminClient, groups: list[str]) -> dict[str, _Described]:
    """Each group's state, members, the partitions assigned to them and the topics they subscribe."""
    by_coordinator: dict[int, list[str]] = {}
    for group in groups:
        by_coordinator.setdefault(await admin.find_coordinator(group), []).append(group)
    described: dict[str, _Described] = {}
    for node, names in by_coordinator.items():
        # aiokafka's admin client has no public way to send a request of one's own.
        response = await admin._send_request(_DescribeGroups(names), node)
        for error, group, state, protocol_type, _, members in response.groups:
            if error:
                described[group] = _Described(for_code(error).__name__, 0, frozenset(), frozenset())
                continue
            assigned: set[TopicPartition] = set()
            subscribed: set[str] = set()
            if protocol_type == "consumer":  # other protocols (Connect...) carry other metadata
                for *_, metadata, assignment in members:
                    if metadata:
                        subscription = ConsumerProtocolMemberMetadata.decode(metadata).subscription
                        subscribed.update(subscription)
                    if assignment:
                        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                        assigned.update(decoded.partitions())
            described[group] = _Described(
                state, len(members), frozenset(assigned), frozenset(subscribed)
            )
    return described


async def _bounds(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The end and first offsets of ``partitions``, asked topic by topic at once: asked in one call,
    aiokafka learns of one unknown topic per metadata round (seconds for a hundred topics)."""
    by_topic: dict[str, list[TopicPartition]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp.topic, []).append(tp)
    ends = await asyncio.gather(*(consumer.end_offsets(tps) for tps in by_topic.values()))
    starts = await asyncio.gather(*(consumer.beginning_offsets(tps) for tps in by_topic.values()))
    return _merged(ends), _merged(starts)


def _merged(answers: Iterable[dict[TopicPartition, int]]) -> dict[TopicPartition, int]:
    return {tp: offset for answer in answers for tp, offset in answer.items()}


def retry_topics_of(group: str, topics: Iterable[str]) -> set[str]:
    """The retry topics a retry group (``<group>.retry``) reads, by their names (schemas.topics)."""
    if not group.endswith(RETRY_GROUP_SUFFIX):
        return set()
    suffix = retry_topic("", group.removesuffix(RETRY_GROUP_SUFFIX))
    return {topic for topic in topics if topic.endswith(suffix) and len(topic) > len(suffix)}


async def consumer_groups(bootstrap: str, group_prefix: str = "") -> list[ConsumerGroup]:
    """Every consumer group on the broker whose name starts with ``group_prefix``: its state, members
    and each partition it reads, committed or not.

    A group's partitions are those it has committed an offset for, those assigned to its members, every
    partition of the topics they subscribe to, and, for an rxsm retry group, its retry topics (a retry
    group commits nothing until a record is retried, and may have no member while its service is down).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="rxsm-cli", **security())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **security())
    await admin.start()
    await consumer.start()
    try:
        names = sorted(
            str(group)
            for group, *_ in await admin.list_consumer_groups()
            if str(group).startswith(group_prefix)
        )
        if not names:
            return []
        described = await _describe(admin, names)
        on_broker = [topic for topic in await admin.list_topics() if not topic.startswith("__")]
        offsets = await asyncio.gather(*(admin.list_consumer_group_offsets(n) for n in names))
        committed = dict(zip(names, offsets, strict=True))
        read: dict[str, set[str]] = {
            name: set(described[name].subscribed) | retry_topics_of(name, on_broker)
            for name in names
        }
        wanted = sorted({topic for topics in read.values() for topic in topics})
        partitions_of_topic: dict[str, list[TopicPartition]] = {}
        for described_topic in await admin.describe_topics(wanted) if wanted else []:
            if not described_topic["error_code"]:
                topic = described_topic["topic"]
                partitions_of_topic[topic] = [
                    TopicPartition(topic, p["partition"]) for p in described_topic["partitions"]
                ]
        reads: dict[str, set[TopicPartition]] = {
            name: set(committed[name])
            | described[name].assigned
            | {tp for topic in read[name] for tp in partitions_of_topic.get(topic, [])}
            for name in names
        }
        ends, starts = await _bounds(consumer, {tp for tps in reads.values() for tp in tps})
        return [
            ConsumerGroup(
                group=name,
                state=described[name].state,
                members=described[name].members,
                partitions=[
                    GroupPartition(
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=committed[name][tp].offset if tp in committed[name] else None,
                        end=ends.get(tp, 0),
                        start=starts.get(tp, 0),
                    )
                    for tp in sorted(reads[name])
                ],
            )
            for name in names
        ]
    finally:
        await consumer.stop()
        await admin.close()
