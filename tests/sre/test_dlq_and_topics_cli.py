"""An SRE finds a dead letter, reads why, replays it once the outage is over, and sees lag."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker, KafkaRouter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from plumbing.broker import make_broker, subscribe
from plumbing.deadletter import MALFORMED_JSON
from plumbing.identity import ServiceIdentity
from plumbing.settings import ServiceSettings
from plumbing.telemetry import tracer_provider
from plumbing.topics import ensure_topics
from rxsm.cli import app
from schemas import topics
from schemas.vocabulary import Tool
from tests.support import eventually, read_topic

pytestmark = pytest.mark.kafka


class Order(BaseModel):
    id: str


@dataclass
class Upstream:
    """A downstream system that is down until told otherwise."""

    up: bool = False
    delivered: list[str] = field(default_factory=list)

    async def handle(self, order: Order) -> None:
        if not self.up:
            raise TimeoutError("upstream timed out")
        self.delivered.append(order.id)


@dataclass
class Running:
    topic: str
    upstream: Upstream
    group: str


@pytest.fixture
async def running(kafka_bootstrap: str) -> AsyncIterator[Running]:
    topic = f"rxsm.test.orders.{uuid4().hex[:8]}"
    identity = ServiceIdentity(f"orders-{uuid4().hex[:6]}", Tool.SM)
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        retry_attempts=1,
        redeliveries=0,
    )
    broker: KafkaBroker = make_broker(
        identity, settings, tracer_provider(identity, exporter=InMemorySpanExporter())
    )
    upstream = Upstream()
    router = KafkaRouter()
    subscribe(router, topic, upstream.handle, identity)
    broker.include_router(router)
    retry = topics.retry_topic(topic, identity.consumer_group)
    await ensure_topics(kafka_bootstrap, 1, [topic, retry])
    await broker.start()
    yield Running(topic, upstream, identity.consumer_group)
    await broker.stop()


async def rxsm(bootstrap: str, *args: str) -> Result:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, list(args), env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    )
    assert result.exit_code == 0, result.output
    return result


async def test_a_dead_letter_is_listed_explained_and_replayed(
    running: Running, kafka_bootstrap: str
) -> None:
    order_id = uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(running.topic, Order(id=order_id).model_dump_json().encode())
    await producer.stop()
    [letter] = await read_topic(
        kafka_bootstrap, topics.DEAD_LETTER, lambda e: e.get("topic") == running.topic
    )

    listed = json.loads((await rxsm(kafka_bootstrap, "dlq", "list", "--json")).output)
    mine = next(item for item in listed if item["event_id"] == letter["event_id"])
    assert mine["reason"] == "TimeoutError after retries"
    assert mine["tool"] == "sm"
    assert "value" not in mine, "the payload is not listed (it may hold PHI)"

    shown = json.loads((await rxsm(kafka_bootstrap, "dlq", "show", letter["event_id"])).output)
    assert shown["consumer_group"] == running.group
    assert "value" not in shown

    running.upstream.up = True
    replayed = await rxsm(kafka_bootstrap, "dlq", "replay", letter["event_id"])
    assert "1 dead letter(s) replayed" in replayed.output

    async def delivered() -> list[str] | None:
        return running.upstream.delivered or None

    assert await eventually(delivered) == [order_id]

    lags = json.loads((await rxsm(kafka_bootstrap, "topics", "--json")).output)
    assert any(lag["group"] == running.group and lag["topic"] == running.topic for lag in lags)


async def test_an_unknown_dead_letter_id_is_a_clear_error(kafka_bootstrap: str) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["dlq", "show", "nope"],
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    assert result.exit_code != 0
    assert "no dead letter with id nope" in result.output


async def test_a_replayed_letter_refused_again_keeps_its_reason_history_and_mark(
    running: Running, kafka_bootstrap: str
) -> None:
    """Not JSON: the main consumer refuses it, and after a replay the retry consumer refuses the same
    bytes for the same reason; the second letter carries the first, and the first is marked."""
    key = uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(running.topic, b'{"id": "truncated', key=key)
    await producer.stop()
    [first] = await read_topic(
        kafka_bootstrap, topics.DEAD_LETTER, lambda e: e.get("topic") == running.topic
    )
    assert first["reason"] == MALFORMED_JSON
    assert first["history"] == []

    await rxsm(kafka_bootstrap, "dlq", "replay", first["event_id"])
    [_, second] = await read_topic(
        kafka_bootstrap, topics.DEAD_LETTER, lambda e: e.get("topic") == running.topic, count=2
    )

    assert second["reason"] == first["reason"]
    assert second["headers"] == first["headers"], "the history is not one of the record's headers"
    [prior] = second["history"]
    assert (prior["event_id"], prior["reason"]) == (first["event_id"], first["reason"])
    listed = json.loads((await rxsm(kafka_bootstrap, "dlq", "list", "--json")).output)
    marks = {item["event_id"]: item["replayed_at"] for item in listed}
    assert len(marks[first["event_id"]]) == 1
    assert marks[second["event_id"]] == []
    table = (await rxsm(kafka_bootstrap, "dlq", "list")).output
    assert "refused 1x before" in table
