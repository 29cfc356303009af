"""Consumer error policy: retry what may pass, dead-letter what cannot, and keep consuming.

- A record whose bytes or schema are wrong (``PermanentError``, pydantic validation, JSON, UTF-8) goes
  straight to the dead-letter topic.
- Any other error is retried in-process with exponential backoff and full jitter. When those tries run
  out, the record is parked on the consumer group's own retry topic (``<topic>.retry.<group>``) with a
  due time, so the main partition moves on; the group consumes its retry topic too and waits for the
  due time before trying again. After ``redeliveries`` rounds the record is dead-lettered.
- The offset is committed only after the retry or dead-letter record is acknowledged by Kafka: if that
  publish fails, FastStream's NACK_ON_ERROR policy consumes the record again. Nothing is lost.

A dead-letter record keeps the original bytes, topic, partition, offset, the error, the attempt count
and the owning tool; ``rxsm dlq replay`` puts it back on the group's retry topic with the letter's history
(``LETTER_HISTORY``), so a record refused again keeps its first refusal's reason. The same bytes always get
the same reason, whichever consumer (batch or single) refused them.
"""

import asyncio
import base64
import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from faststream import BaseMiddleware, ContextRepo, StreamMessage
from faststream.exceptions import HandlerException
from pydantic import TypeAdapter, ValidationError

from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from plumbing.metrics import ServiceMetrics
from plumbing.telemetry import record_failure
from schemas import topics
from schemas.events import DeadLetter, PriorLetter

ATTEMPTS = "rxsm-attempts"
REDELIVERIES = "rxsm-redeliveries"
RETRY_AT = "rxsm-retry-at-ms"
ORIGINAL_TOPIC = "rxsm-original-topic"
ORIGINAL_PARTITION = "rxsm-original-partition"
ORIGINAL_OFFSET = "rxsm-original-offset"
METRICS = "metrics"
"""The broker context key of the service's ``ServiceMetrics``: dead letters are counted there."""
RETRY_POLICY = "retry_policy"
"""The broker context key of the service's ``RetryPolicy`` (set by make_broker)."""
LETTER_HISTORY = "rxsm-letter-history"
"""On a replayed record: its earlier dead letters (JSON list of ``PriorLetter``; reasons hold no PHI)."""
RETRY_GROUP_SUFFIX = ".retry"
"""The retry topics of group G are read by group G + this suffix (so neither rebalances the other)."""
RETRY_HEADERS = (
    ATTEMPTS,
    REDELIVERIES,
    RETRY_AT,
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
)


class PermanentError(Exception):
    """An event that will never succeed, however often it is retried. ``reason`` must hold no PHI."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


PERMANENT = (PermanentError, ValidationError, json.JSONDecodeError, UnicodeDecodeError)


MALFORMED_JSON = "malformed JSON: the record is not a JSON document (or not UTF-8)"


def reason_for(value: bytes | None, error: BaseException) -> str:
    """Why the record ``value`` failed: bytes that are not JSON are "malformed JSON" whichever
    decoder noticed (a batch handler's, or FastStream's, which hands the validator raw bytes)."""
    if isinstance(error, PERMANENT) and not isinstance(error, PermanentError):
        try:
            json.loads(value or b"")
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return MALFORMED_JSON
    return safe_reason(error)


def safe_reason(error: BaseException) -> str:
    """Why a record failed, without echoing any of its content (it may hold PHI)."""
    if isinstance(error, PermanentError):
        return error.reason
    if isinstance(error, ValidationError):
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            return MALFORMED_JSON
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or '<root>'}: {problem['type']}"
            for problem in error.errors(include_input=False, include_url=False)[:10]
        ]
        return "invalid event: " + "; ".join(problems)
    if isinstance(error, json.JSONDecodeError):
        return f"malformed JSON at line {error.lineno} column {error.colno}"
    if isinstance(error, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {error.start}"
    return f"{type(error).__name__} after retries"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Tries in-process, per delivery."""
    backoff_seconds: float = 0.2
    redeliveries: int = 3
    """Rounds through the retry topic before the record is dead-lettered."""
    redelivery_delay_seconds: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff before in-process try ``attempt + 1``."""
        return random.uniform(0, self.backoff_seconds * 2 ** (attempt - 1))

    def redelivery_delay(self, redelivery: int) -> float:
        return float(self.redelivery_delay_seconds * 2**redelivery)


@dataclass(frozen=True)
class Delivery:
    """Where a record really comes from, and how often it was tried, across retry rounds."""

    record: ConsumerRecord
    headers: dict[str, str]

    @classmethod
    def of(cls, record: ConsumerRecord) -> "Delivery":
        headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
        return cls(record, headers)

    @property
    def topic(self) -> str:
        return self.headers.get(ORIGINAL_TOPIC) or str(self.record.topic)

    @property
    def partition(self) -> int:
        return int(self.headers.get(ORIGINAL_PARTITION, self.record.partition))

    @property
    def offset(self) -> int:
        return int(self.headers.get(ORIGINAL_OFFSET, self.record.offset))

    @property
    def earlier_attempts(self) -> int:
        return int(self.headers.get(ATTEMPTS, 0))

    @property
    def redeliveries(self) -> int:
        return int(self.headers.get(REDELIVERIES, 0))

    @property
    def seconds_until_due(self) -> float:
        return max(int(self.headers.get(RETRY_AT, 0)) / 1000 - time.time(), 0.0)

    def original_headers(self) -> dict[str, str]:
        """The record's own headers and its letter history (which travels with it)."""
        return {k: v for k, v in self.headers.items() if k not in RETRY_HEADERS}

    def history(self) -> list[PriorLetter]:
        """The record's earlier dead letters; an unreadable history is dropped, not fatal."""
        try:
            return PRIOR_LETTERS.validate_json(self.headers.get(LETTER_HISTORY, "[]"))
        except ValidationError:
            return []


PRIOR_LETTERS = TypeAdapter(list[PriorLetter])


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


LETTER_VALUE_LIMIT = 256 * 1024
"""Bytes of the original value a dead letter keeps, so the letter itself always fits in Kafka."""


def dead_letter_for(
    delivery: Delivery, identity: ServiceIdentity, group: str, error: BaseException, attempts: int
) -> DeadLetter:
    value: bytes = delivery.record.value or b""
    return DeadLetter(
        tool=identity.tool,
        service=identity.name,
        consumer_group=group,
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        key=_b64(delivery.record.key),
        value=_b64(value[:LETTER_VALUE_LIMIT]) or "",
        value_size=len(value),
        value_truncated=len(value) > LETTER_VALUE_LIMIT,
        value_sha256=hashlib.sha256(value).hexdigest(),
        headers={k: v for k, v in delivery.original_headers().items() if k != LETTER_HISTORY},
        error_type=type(error).__name__,
        reason=reason_for(value, error),
        attempts=attempts,
        history=delivery.history(),
    )


@dataclass
class Settlement:
    """What becomes of a record that failed for good in this delivery: a permanent error, or no
    redeliveries left, dead-letters it; otherwise it is parked on the group's retry topic with a
    due time. Used by the middleware, and by batch handlers for the single records of a batch."""

    identity: ServiceIdentity
    policy: RetryPolicy
    group: str
    broker: Any
    metrics: ServiceMetrics | None

    @classmethod
    def of(cls, context: ContextRepo, identity: ServiceIdentity, group: str) -> "Settlement":
        """The settlement of ``group``'s records, from the broker's context (see make_broker)."""
        metrics = context.get(METRICS)
        return cls(
            identity,
            context.get(RETRY_POLICY) or RetryPolicy(),
            group,
            context.get("broker"),
            metrics if isinstance(metrics, ServiceMetrics) else None,
        )

    @property
    def log(self) -> Any:
        return get_logger(self.identity)

    async def refuse(self, record: ConsumerRecord, error: BaseException) -> None:
        """Settle one record of a batch that failed (tried once in this delivery), marking the
        current span failed."""
        record_failure(type(error).__name__, self.identity.tool)
        delivery = Delivery.of(record)
        await self.settle(delivery, error, delivery.earlier_attempts + 1)

    async def settle(self, delivery: Delivery, error: BaseException, attempts: int) -> None:
        if isinstance(error, PERMANENT) or delivery.redeliveries >= self.policy.redeliveries:
            await self.dead_letter(delivery, error, attempts)
        else:
            await self.park(delivery, error, attempts)

    async def park(self, delivery: Delivery, error: BaseException, attempts: int) -> None:
        delay = self.policy.redelivery_delay(delivery.redeliveries)
        headers = {
            **delivery.original_headers(),
            ATTEMPTS: str(attempts),
            REDELIVERIES: str(delivery.redeliveries + 1),
            RETRY_AT: str(int((time.time() + delay) * 1000)),
            ORIGINAL_TOPIC: delivery.topic,
            ORIGINAL_PARTITION: str(delivery.partition),
            ORIGINAL_OFFSET: str(delivery.offset),
        }
        retry_topic = topics.retry_topic(delivery.topic, self.group)
        await self.broker.publish(
            delivery.record.value, topic=retry_topic, key=delivery.record.key, headers=headers
        )
        self.log.warning(
            "event parked for retry",
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            error_type=type(error).__name__,
            attempts=attempts,
            retry_in_seconds=delay,
        )

    async def dead_letter(self, delivery: Delivery, error: BaseException, attempts: int) -> None:
        letter = dead_letter_for(delivery, self.identity, self.group, error, attempts)
        await self.broker.publish(letter, topic=topics.DEAD_LETTER, key=delivery.record.key)
        if self.metrics is not None:
            self.metrics.dead_letters.add(
                1,
                {
                    "tool": str(self.identity.tool),
                    "consumer_group": self.group,
                    "topic": delivery.topic,
                    "error_type": letter.error_type,
                },
            )
        self.log.warning(
            "event dead-lettered",
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            error_type=letter.error_type,
            reason=letter.reason,
            attempts=attempts,
        )


class DeadLetterMiddleware:
    """FastStream middleware factory: ``KafkaBroker(middlewares=[DeadLetterMiddleware(...)])``."""

    def __init__(self, identity: ServiceIdentity, policy: RetryPolicy) -> None:
        self.identity = identity
        self.policy = policy

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> "_DeadLetterScope":
        return _DeadLetterScope(msg, context=context, identity=self.identity, policy=self.policy)


class _DeadLetterScope(BaseMiddleware):
    def __init__(
        self, msg: Any, /, *, context: ContextRepo, identity: ServiceIdentity, policy: RetryPolicy
    ) -> None:
        super().__init__(msg, context=context)
        self.identity = identity
        self.policy = policy

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        if isinstance(msg.raw_message, tuple):
            # A batch: its handler settles each record itself (Settlement); an unexpected error
            # leaves the batch uncommitted, so it is consumed again.
            return await call_next(msg)
        delivery = Delivery.of(msg.raw_message)
        await asyncio.sleep(delivery.seconds_until_due)
        tries = 0
        while True:
            tries += 1
            try:
                return await call_next(msg)
            except (HandlerException, asyncio.CancelledError):
                raise
            except PERMANENT as error:
                record_failure(type(error).__name__, self.identity.tool)
                await self._settlement().dead_letter(
                    delivery, error, delivery.earlier_attempts + tries
                )
                return None
            except Exception as error:
                record_failure(type(error).__name__, self.identity.tool)
                if tries < self.policy.attempts:
                    await asyncio.sleep(self.policy.backoff(tries))
                    continue
                await self._settlement().settle(delivery, error, delivery.earlier_attempts + tries)
                return None

    def _settlement(self) -> Settlement:
        """Built only when a record has failed: the common path pays nothing for it."""
        metrics = self.context.get(METRICS)
        return Settlement(
            self.identity,
            self.policy,
            self.group,
            self.context.get("broker"),
            metrics if isinstance(metrics, ServiceMetrics) else None,
        )

    @property
    def group(self) -> str:
        subscriber = self.context.get("handler_")
        group = str(getattr(subscriber, "group_id", None) or self.identity.consumer_group)
        return group.removesuffix(RETRY_GROUP_SUFFIX)
