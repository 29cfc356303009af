"""SQLAlchemy 2 async engines: SQLite (embedded default) or PostgreSQL, chosen by one URL."""

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import DateTime, Dialect, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase


def make_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite gets its folder created, WAL journaling and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass
class _DatabaseThread:
    """A SQLite file's own thread, with a plain (sync) engine on the same file."""

    engine: Engine
    thread: ThreadPoolExecutor


T = TypeVar("T")

_THREADS: "WeakKeyDictionary[AsyncEngine, _DatabaseThread]" = WeakKeyDictionary()


def _thread_of(engine: AsyncEngine) -> _DatabaseThread | None:
    """The database thread of a SQLite file's engine (made on first use); None on PostgreSQL or an
    in-memory SQLite database (which another engine would not see)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    found = _THREADS.get(engine)
    if found is None:
        sync = create_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30})
        event.listen(sync, "connect", _sqlite_pragmas)
        found = _THREADS[engine] = _DatabaseThread(
            sync, ThreadPoolExecutor(1, thread_name_prefix="rxsm-database")
        )
    return found


async def in_transaction(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """``work`` run in one transaction of plain SQL (SQLAlchemy Core on a sync ``Connection``),
    committed when it returns and rolled back when it raises.

    On a SQLite file the whole transaction runs on the file's own database thread, with the plain
    sqlite3 driver: one hand-off per transaction, where aiosqlite makes one per statement (measured:
    half the CPU and the time of a five-statement transaction). On PostgreSQL it runs on one of
    the async engine's connections (asyncpg makes no thread hand-off). The caller's context
    (its current span) goes with the work."""
    database = _thread_of(engine)
    if database is None:
        async with engine.begin() as connection:
            return await connection.run_sync(work)

    def transaction() -> T:
        with database.engine.begin() as connection:
            return work(connection)

    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        database.thread, context.run, transaction
    )


async def dispose(engine: AsyncEngine) -> None:
    """Close ``engine``'s connections, and its database thread's."""
    await engine.dispose()
    database = _THREADS.pop(engine, None)
    if database is not None:
        await asyncio.get_running_loop().run_in_executor(database.thread, database.engine.dispose)
        database.thread.shutdown(wait=False)


def missing_sqlite_file(url: str) -> bool:
    """True for a SQLite URL whose file is not there (connecting would create it, empty)."""
    parsed = make_url(url)
    database = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and database not in (None, "", ":memory:")
        and not Path(str(database)).exists()
    )


async def create_tables(engine: AsyncEngine, base: type[DeclarativeBase]) -> None:
    """Create ``base``'s missing tables; instances starting together on PostgreSQL take turns.

    For tests: the services make and change their tables by migrations (plumbing.migrations), which
    adopt a database made this way."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('rxsm-tables'))"))
        await connection.run_sync(base.metadata.create_all)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it without its zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
