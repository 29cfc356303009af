"""``in_transaction``: a batch's plain-SQL transaction, on a SQLite file in one hand-off to the
file's own database thread; committed when the work returns, rolled back when it raises, with the
caller's current span."""

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from plumbing.database import dispose, in_transaction, make_engine

METADATA = MetaData()
ROWS = Table("rows", METADATA, Column("id", Integer, primary_key=True), Column("v", String(8)))


async def engine_at(url: str) -> AsyncEngine:
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    return engine


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(ROWS))).scalar_one())


def add(rows: int) -> Callable[[Connection], str]:
    def work(connection: Connection) -> str:
        connection.execute(insert(ROWS), [{"v": "x"} for _ in range(rows)])
        return threading.current_thread().name

    return work


async def test_work_on_a_sqlite_file_runs_on_its_database_thread_and_is_committed(
    tmp_path: Path,
) -> None:
    engine = await engine_at(f"sqlite+aiosqlite:///{tmp_path}/rows.db")
    try:
        ran_on = await in_transaction(engine, add(3))
        again = await in_transaction(engine, add(2))

        assert ran_on.startswith("rxsm-database") and again == ran_on, "one thread per file"
        assert await count(engine) == 5, "seen by the service's other connections"
    finally:
        await dispose(engine)


async def test_work_that_raises_leaves_nothing(tmp_path: Path) -> None:
    engine = await engine_at(f"sqlite+aiosqlite:///{tmp_path}/rows.db")

    def fails(connection: Connection) -> None:
        add(3)(connection)
        raise RuntimeError("the batch failed half way")

    try:
        with pytest.raises(RuntimeError):
            await in_transaction(engine, fails)
        assert await count(engine) == 0
    finally:
        await dispose(engine)


async def test_the_work_runs_in_the_callers_span(tmp_path: Path) -> None:
    engine = await engine_at(f"sqlite+aiosqlite:///{tmp_path}/rows.db")
    tracer = TracerProvider().get_tracer("test")

    def span_id(_: Connection) -> int:
        return trace.get_current_span().get_span_context().span_id

    try:
        with tracer.start_as_current_span("batch") as span:
            assert await in_transaction(engine, span_id) == span.get_span_context().span_id
    finally:
        await dispose(engine)


async def test_an_in_memory_database_is_worked_on_its_own_connection() -> None:
    """Another engine would open another, empty, in-memory database."""
    engine = await engine_at("sqlite+aiosqlite://")
    try:
        ran_on = await in_transaction(engine, add(2))
        assert not ran_on.startswith("rxsm-database")
        assert await count(engine) == 2
    finally:
        await dispose(engine)
