"""Dead letters for SREs: list them, look at one, and replay it to the consumer group that failed it."""

import base64
import time
from datetime import datetime
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer

from plumbing.deadletter import (
    ATTEMPTS,
    LETTER_HISTORY,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    PRIOR_LETTERS,
    REDELIVERIES,
    RETRY_AT,
)
from rxsm.kafka_reads import read_json, security
from schemas import topics
from schemas.events import DeadLetter, DeadLetterReplayed, PriorLetter


async def dead_letters(bootstrap: str) -> list[DeadLetter]:
    letters, _ = await dead_letters_and_replays(bootstrap)
    return letters


async def dead_letters_and_replays(
    bootstrap: str,
) -> tuple[list[DeadLetter], dict[UUID, list[datetime]]]:
    """Every dead letter, and when each replayed one was replayed (by letter id)."""
    letters: list[DeadLetter] = []
    replays: dict[UUID, list[datetime]] = {}
    for value in await read_json(bootstrap, topics.DEAD_LETTER):
        if value.get("event_type") == "dead_letter":
            letters.append(DeadLetter.model_validate(value))
        elif value.get("event_type") == "dead_letter.replayed":
            marker = DeadLetterReplayed.model_validate(value)
            replays.setdefault(marker.letter_id, []).append(marker.occurred_at)
    return letters, replays


async def find(bootstrap: str, letter_id: str) -> DeadLetter | None:
    letters = await dead_letters(bootstrap)
    return next((letter for letter in letters if str(letter.event_id) == letter_id), None)


def replay_record(letter: DeadLetter) -> dict[str, Any]:
    """Where and how a dead letter is replayed: the failing group's retry topic, due now, fresh count,
    with the letter's history (this letter last), so a second refusal keeps the first one's reason."""
    prior = PriorLetter(
        event_id=letter.event_id,
        occurred_at=letter.occurred_at,
        service=letter.service,
        consumer_group=letter.consumer_group,
        error_type=letter.error_type,
        reason=letter.reason,
    )
    headers = {
        **letter.headers,
        LETTER_HISTORY: PRIOR_LETTERS.dump_json([*letter.history, prior]).decode(),
        ATTEMPTS: "0",
        REDELIVERIES: "0",
        RETRY_AT: str(int(time.time() * 1000)),
        ORIGINAL_TOPIC: letter.topic,
        ORIGINAL_PARTITION: str(letter.partition),
        ORIGINAL_OFFSET: str(letter.offset),
    }
    return {
        "topic": topics.retry_topic(letter.topic, letter.consumer_group),
        "key": base64.b64decode(letter.key) if letter.key else None,
        "value": base64.b64decode(letter.value),
        "headers": [(name, value.encode()) for name, value in headers.items()],
    }


async def replay(bootstrap: str, letters: list[DeadLetter]) -> list[str]:
    """Republish ``letters``; returns the topics they went to. A letter that kept only the first
    bytes of a huge record cannot be replayed (the original must be fetched from its topic)."""
    truncated = [str(letter.event_id) for letter in letters if letter.value_truncated]
    if truncated:
        raise ValueError(f"these dead letters hold a truncated value: {', '.join(truncated)}")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **security()
    )
    await producer.start()
    try:
        sent = []
        for letter in letters:
            record = replay_record(letter)
            await producer.send_and_wait(**record)
            marker = DeadLetterReplayed(letter_id=letter.event_id, retry_topic=record["topic"])
            await producer.send_and_wait(
                topics.DEAD_LETTER, marker.model_dump_json().encode(), key=record["key"]
            )
            sent.append(record["topic"])
        return sent
    finally:
        await producer.stop()
