"""On the real broker: a failing record never blocks its partition, and is never lost."""

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker, KafkaRouter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, TypeAdapter, ValidationError

from plumbing.broker import make_broker, subscribe
from plumbing.deadletter import safe_reason
from plumbing.identity import ServiceIdentity
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from plumbing.topics import ensure_topics
from schemas import topics
from schemas.vocabulary import Tool
from tests.support import eventually, read_topic

pytestmark = pytest.mark.kafka


class Ping(BaseModel):
    id: str
    fail_times: int


class Recorder:
    """A handler that fails the first ``fail_times`` deliveries of each record."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.done: list[str] = []

    async def __call__(self, ping: Ping) -> None:
        self.calls[ping.id] = self.calls.get(ping.id, 0) + 1
        if self.calls[ping.id] <= ping.fail_times:
            raise ConnectionError("upstream unavailable")
        self.done.append(ping.id)


@pytest.fixture
async def running(kafka_bootstrap: str) -> AsyncIterator[tuple[str, Recorder]]:
    topic = f"rxsm.test.pings.{uuid4().hex[:8]}"
    identity = ServiceIdentity(f"pinger-{uuid4().hex[:6]}", Tool.SM)
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        retry_attempts=2,
        retry_backoff_seconds=0.01,
        redeliveries=1,
        redelivery_delay_seconds=0.5,
    )
    broker: KafkaBroker = make_broker(
        identity, settings, tracer_provider(identity, exporter=InMemorySpanExporter())
    )
    recorder = Recorder()
    router = KafkaRouter()
    subscribe(router, topic, recorder, identity)
    broker.include_router(router)
    await ensure_topics(
        kafka_bootstrap, 1, [topic, topics.retry_topic(topic, identity.consumer_group)]
    )
    await broker.start()
    yield topic, recorder
    await broker.stop()


async def produce(bootstrap: str, topic: str, *values: bytes) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return [(await producer.send_and_wait(topic, value, key=b"k")).offset for value in values]
    finally:
        await producer.stop()


async def test_a_transient_failure_is_parked_and_retried_while_the_partition_moves_on(
    running: tuple[str, Recorder], kafka_bootstrap: str
) -> None:
    topic, recorder = running
    await produce(
        kafka_bootstrap,
        topic,
        Ping(id="slow", fail_times=3).model_dump_json().encode(),
        Ping(id="fine", fail_times=0).model_dump_json().encode(),
    )

    async def both_done() -> list[str] | None:
        return recorder.done if len(recorder.done) == 2 else None

    assert await eventually(both_done, within=20) == ["fine", "slow"]
    assert recorder.calls["slow"] == 4, "two tries in-process, then two from the retry topic"


async def test_a_record_that_keeps_failing_is_dead_lettered_with_its_attempts(
    running: tuple[str, Recorder], kafka_bootstrap: str
) -> None:
    topic, recorder = running
    [offset] = await produce(
        kafka_bootstrap, topic, Ping(id="doomed", fail_times=99).model_dump_json().encode()
    )

    [letter] = await read_topic(
        kafka_bootstrap,
        topics.DEAD_LETTER,
        lambda e: e.get("topic") == topic and e.get("offset") == offset,
    )
    assert letter["attempts"] == 4
    assert letter["error_type"] == "ConnectionError"
    assert letter["reason"] == "ConnectionError after retries"
    assert recorder.calls["doomed"] == 4


async def test_poison_goes_straight_to_dead_letter_and_the_consumer_keeps_going(
    running: tuple[str, Recorder], kafka_bootstrap: str
) -> None:
    topic, recorder = running
    poison = [b"\xff\xfe not utf-8", b'{"id": 1}', b"[1, 2", b'{"id": "x", "fail_times": "many"}']
    offsets = await produce(
        kafka_bootstrap, topic, *poison, Ping(id="after", fail_times=0).model_dump_json().encode()
    )

    letters = await read_topic(
        kafka_bootstrap, topics.DEAD_LETTER, lambda e: e.get("topic") == topic, count=len(poison)
    )
    assert sorted(letter["offset"] for letter in letters) == offsets[:-1]
    assert all(letter["attempts"] == 1 for letter in letters)
    await asyncio.sleep(0)
    assert await eventually(lambda: _done(recorder, "after"))


async def _done(recorder: Recorder, ping_id: str) -> bool | None:
    return True if ping_id in recorder.done else None


@pytest.mark.parametrize("value", [b"{Jane Doe 123-45-6789", b"\xff\xfeJane Doe 123-45-6789"])
def test_a_record_that_is_not_json_is_refused_as_malformed_json_without_echoing_it(
    value: bytes,
) -> None:
    with pytest.raises(ValidationError) as error:
        TypeAdapter(Ping).validate_json(value)

    reason = safe_reason(error.value)

    assert reason.startswith("malformed JSON")
    assert "Jane" not in reason and "6789" not in reason


def test_a_record_of_the_wrong_shape_names_the_fields_at_fault() -> None:
    with pytest.raises(ValidationError) as error:
        TypeAdapter(Ping).validate_json(b'{"id": "p-1"}')

    assert safe_reason(error.value) == "invalid event: fail_times: missing"
