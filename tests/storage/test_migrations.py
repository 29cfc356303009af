"""Schema migrations: every service database reaches the models' schema by its migrations, whether it
starts empty or was made by the previous release (``create_all``, before migrations existed), on
SQLite and on PostgreSQL.

``before_migrations/<service>.<dialect>.sql`` is the DDL ``create_all`` emitted at commit b5b9575 (the
last one without migrations), captured from SQLAlchemy for each dialect.
"""

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from plumbing import migrations
from plumbing.database import make_engine

BEFORE = Path(__file__).parent / "before_migrations"
EVERY = pytest.mark.parametrize("service", list(migrations.DATABASES))
"""Every service database."""
RELEASED = pytest.mark.parametrize("service", list(migrations.BEFORE_MIGRATIONS))
"""The databases the previous release had (made by create_all)."""


async def differences(engine: AsyncEngine, service: str) -> list[Any]:
    """What autogenerate would change to make the database match the models (empty: they match)."""
    async with engine.connect() as connection:
        return await connection.run_sync(migrations.differences, service)


async def revisions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(migrations.current)


async def made_before_migrations(engine: AsyncEngine, service: str) -> None:
    """The service's database as the previous release left it: its tables, with a row in each of
    the outbox and the inbox, and no migration history."""
    ddl = (BEFORE / f"{service}.{engine.dialect.name}.sql").read_text()
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        for statement in ddl.split(";\n"):
            if statement.strip():
                await connection.execute(text(statement))
        await connection.execute(
            text(
                "INSERT INTO outbox (event_id, topic, key, value, headers, created_at)"
                " VALUES ('e-1', 't', :b, :b, '{}', :now)"
            ),
            {"b": b"x", "now": now},
        )
        await connection.execute(
            text("INSERT INTO processed_events VALUES ('g', 'e-0', :now)"), {"now": now}
        )


@EVERY
async def test_an_empty_database_is_migrated_to_exactly_the_models(
    engine: AsyncEngine, service: str
) -> None:
    done = await migrations.upgrade(engine, service)

    assert done.before == frozenset() and not done.adopted
    assert done.after == migrations.heads(service)
    assert await differences(engine, service) == []


@RELEASED
async def test_a_database_of_the_previous_release_is_adopted_and_upgraded_keeping_its_rows(
    engine: AsyncEngine, service: str
) -> None:
    await made_before_migrations(engine, service)
    async with engine.connect() as connection:
        indexes = await connection.run_sync(
            lambda sync: inspect(sync).get_indexes("processed_events")
        )
    assert indexes == [], "the previous release had no index on the inbox"

    done = await migrations.upgrade(engine, service)

    assert done.adopted and done.before == frozenset()
    assert done.after == migrations.heads(service)
    assert await differences(engine, service) == []
    async with engine.connect() as connection:
        kept = (await connection.execute(text("SELECT event_id FROM outbox"))).scalars().all()
        inbox = (
            (await connection.execute(text("SELECT event_id FROM processed_events")))
            .scalars()
            .all()
        )
    assert (kept, inbox) == (["e-1"], ["e-0"])


@EVERY
async def test_upgrading_a_current_database_changes_nothing(
    engine: AsyncEngine, service: str
) -> None:
    first = await migrations.upgrade(engine, service)

    again = await migrations.upgrade(engine, service)

    assert again.before == again.after == first.after
    assert not again.adopted


@EVERY
async def test_an_empty_database_is_refused_at_start_unless_migrations_run(
    engine: AsyncEngine, service: str
) -> None:
    with pytest.raises(migrations.SchemaError, match=f"rxsm db upgrade --service {service}"):
        await migrations.prepare_schema(engine, service, migrate=False)

    await migrations.prepare_schema(engine, service, migrate=True)

    await migrations.prepare_schema(engine, service, migrate=False)
    assert await revisions(engine) == migrations.heads(service)


@RELEASED
async def test_a_database_of_the_previous_release_is_refused_at_start_unless_migrations_run(
    engine: AsyncEngine, service: str
) -> None:
    await made_before_migrations(engine, service)
    with pytest.raises(migrations.SchemaError, match="no revision"):
        await migrations.prepare_schema(engine, service, migrate=False)

    await migrations.prepare_schema(engine, service, migrate=True)

    await migrations.prepare_schema(engine, service, migrate=False)
    assert await revisions(engine) == migrations.heads(service)


@EVERY
async def test_tables_of_unknown_origin_are_left_alone(engine: AsyncEngine, service: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE outbox (id INTEGER PRIMARY KEY)"))

    with pytest.raises(migrations.SchemaError, match="move it aside"):
        await migrations.upgrade(engine, service)

    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert tables == ["outbox"]


@EVERY
async def test_instances_starting_together_migrate_once(
    database_url: str, backend: str, service: str
) -> None:
    if backend == "sqlite":
        pytest.skip("one process owns a SQLite database")
    engines = [make_engine(database_url) for _ in range(3)]
    try:
        done = await asyncio.gather(*(migrations.upgrade(e, service) for e in engines))
    finally:
        for engine in engines:
            await engine.dispose()

    assert sorted(len(d.before) for d in done) == [0, 2, 2]
    assert all(d.after == migrations.heads(service) for d in done)


@EVERY
async def test_a_database_made_by_create_all_of_these_models_is_taken_as_current(
    engine: AsyncEngine, service: str
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(migrations.metadata_of(service).create_all)

    done = await migrations.upgrade(engine, service)

    assert done.adopted
    assert done.after == migrations.heads(service)
    assert await differences(engine, service) == []
