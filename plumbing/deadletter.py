"""Consumer error policy: retry what may pass, dead-letter what cannot, and keep consuming.

A record whose bytes or schema are wrong (``PermanentError``, pydantic validation, JSON, UTF-8) goes
straight to the dead-letter topic. Any other error is retried in-process with exponential backoff and
jitter; when the tries run out the record is dead-lettered too. Either way the offset is committed only
after the dead-letter record is acknowledged by Kafka, so nothing is lost: if that publish fails, the
error reaches FastStream's NACK_ON_ERROR policy and the record is consumed again.
"""

import asyncio
import base64
import json
import random
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from faststream import BaseMiddleware, ContextRepo, StreamMessage
from faststream.exceptions import HandlerException
from pydantic import ValidationError

from plumbing.identity import ServiceIdentity
from plumbing.logs import get_logger
from schemas import topics
from schemas.events import DeadLetter


class PermanentError(Exception):
    """An event that will never succeed, however often it is retried. ``reason`` must hold no PHI."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


PERMANENT = (PermanentError, ValidationError, json.JSONDecodeError, UnicodeDecodeError)


def safe_reason(error: BaseException) -> str:
    """Why a record failed, without echoing any of its content (it may hold PHI)."""
    if isinstance(error, PermanentError):
        return error.reason
    if isinstance(error, ValidationError):
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
    backoff_seconds: float = 0.2

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before try ``attempt + 1``."""
        return random.uniform(0, self.backoff_seconds * 2 ** (attempt - 1))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def dead_letter_for(
    record: ConsumerRecord, identity: ServiceIdentity, error: BaseException, attempts: int
) -> DeadLetter:
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    return DeadLetter(
        tool=identity.tool,
        service=identity.name,
        consumer_group=identity.consumer_group,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=_b64(record.key),
        value=_b64(record.value) or "",
        headers=headers,
        error_type=type(error).__name__,
        reason=safe_reason(error),
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
        attempt = 1
        while True:
            try:
                return await call_next(msg)
            except (HandlerException, asyncio.CancelledError):
                raise
            except PERMANENT as error:
                await self._dead_letter(msg, error, attempt)
                return None
            except Exception as error:
                if attempt >= self.policy.attempts:
                    await self._dead_letter(msg, error, attempt)
                    return None
                await asyncio.sleep(self.policy.delay(attempt))
                attempt += 1

    async def _dead_letter(
        self, msg: StreamMessage[Any], error: BaseException, attempts: int
    ) -> None:
        record: ConsumerRecord = msg.raw_message
        letter = dead_letter_for(record, self.identity, error, attempts)
        broker = self.context.get("broker")
        await broker.publish(letter, topic=topics.DEAD_LETTER, key=record.key)
        get_logger(self.identity).warning(
            "event dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=letter.error_type,
            reason=letter.reason,
            attempts=attempts,
        )
