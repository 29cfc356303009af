"""Helpers for tests that drive the services: tokens, Kafka reads, waiting."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar
from uuid import uuid4

import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from localkafka import free_port
from plumbing.auth import AuthSettings, issue_token
from rxsm.serve import SERVER_OPTIONS

T = TypeVar("T")


def bearer(veteran_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(veteran_id, AuthSettings())}"}


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float = 30.0, every: float = 0.1
) -> T:
    """Await ``probe`` until it returns something other than None, or fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing came within {within} s")
        await asyncio.sleep(every)


async def read_topic(
    bootstrap: str,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    count: int = 1,
    within: float = 30.0,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``count`` JSON records satisfy ``match``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"rxsm-test-{uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while len(found) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"found {len(found)} of {count} records on {topic}")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        value = json.loads(record.value)
                    except (ValueError, TypeError):
                        continue
                    if isinstance(value, dict) and match(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found


@contextmanager
def logging_kept() -> Iterator[None]:
    """Run the command line in this process without it taking over the process's logging (it sets
    up its own, as its own process would): the services' log lines keep going where they went."""
    root = logging.getLogger()
    handlers, level, config = list(root.handlers), root.level, structlog.get_config()
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level
        structlog.configure(**config)


@asynccontextmanager
async def served_on_a_port(app: FastAPI) -> AsyncIterator[str]:
    """``app`` (already started: no lifespan here) on a free local port, served by uvicorn as
    ``rxsm serve`` serves it (``SERVER_OPTIONS``), as real clients reach it; its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", **SERVER_OPTIONS)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())

    async def started() -> bool | None:
        if serving.done():
            serving.result()
        return True if server.started else None

    try:
        await eventually(started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
