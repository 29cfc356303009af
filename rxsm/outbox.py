"""``rxsm outbox``: the events Kafka refused for good, set aside in each stateful service's outbox.

Each service's database is where the service itself would find it: ``RXSM_DATABASE_URL``, else SQLite
in ``RXSM_DATA_DIR``. A database that does not exist yet is reported as such, never created.
"""

import asyncio
from dataclasses import dataclass

from sqlalchemy import inspect

from plumbing.database import make_engine, missing_sqlite_file, session_factory
from plumbing.migrations import DATABASES
from plumbing.outbox import OutboxRow, SetAside, set_aside
from plumbing.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceOutbox:
    service: str
    found: bool
    """Whether the service's database (with its outbox) exists."""
    events: list[SetAside]


async def _read(service: str, url: str) -> ServiceOutbox:
    if missing_sqlite_file(url):
        return ServiceOutbox(service, False, [])
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        if OutboxRow.__tablename__ not in tables:
            return ServiceOutbox(service, False, [])
        async with session_factory(engine)() as session:
            return ServiceOutbox(service, True, await set_aside(session))
    finally:
        await engine.dispose()


def set_aside_events(
    service: str | None = None, settings: ServiceSettings | None = None
) -> list[ServiceOutbox]:
    """The set-aside events of ``service`` (of each stateful service when None), most recent first."""
    settings = settings or ServiceSettings()
    names = [service] if service else list(DATABASES)

    async def read_all() -> list[ServiceOutbox]:
        return [await _read(name, settings.database_url_for(name)) for name in names]

    return asyncio.run(read_all())
