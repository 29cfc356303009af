"""``rxsm db``: the stateful services' database schemas, upgraded or shown (plumbing.migrations).

Each service's database is where the service itself would find it: ``RXSM_DATABASE_URL``, else SQLite
in ``RXSM_DATA_DIR``.
"""

import asyncio
from dataclasses import dataclass

from plumbing import migrations
from plumbing.database import make_engine, missing_sqlite_file
from plumbing.settings import ServiceSettings


@dataclass(frozen=True)
class Schema:
    service: str
    url: str
    """Without its password."""
    at: frozenset[str]
    needed: frozenset[str]
    found: bool = True
    """False when the database is not there (a SQLite file not made yet): nothing is created."""

    @property
    def current(self) -> bool:
        return self.at == self.needed


def databases(service: str | None, settings: ServiceSettings) -> dict[str, str]:
    """The database URL of ``service`` (of each stateful service when None)."""
    if service is not None and service not in migrations.DATABASES:
        raise migrations.SchemaError(
            f"{service} keeps no tables (stateful services: {', '.join(migrations.DATABASES)})"
        )
    names = [service] if service else list(migrations.DATABASES)
    urls = {name: settings.database_url_for(name) for name in names}
    if len(set(urls.values())) < len(urls):
        raise migrations.SchemaError(
            "RXSM_DATABASE_URL names one database for every service, but each stateful service "
            "needs its own: run once per service with --service and that service's URL"
        )
    return urls


async def _upgrade(urls: dict[str, str]) -> list[migrations.Upgraded]:
    done = []
    for service, url in urls.items():
        engine = make_engine(url)
        try:
            done.append(await migrations.upgrade(engine, service))
        finally:
            await engine.dispose()
    return done


async def _status(urls: dict[str, str]) -> list[Schema]:
    found = []
    for service, url in urls.items():
        needed = frozenset(migrations.heads(service))
        shown = migrations.shown_url(url)
        if missing_sqlite_file(url):
            found.append(Schema(service, shown, frozenset(), needed, found=False))
            continue
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                at = await connection.run_sync(migrations.current)
        finally:
            await engine.dispose()
        found.append(Schema(service, shown, frozenset(at), needed))
    return found


def upgrade(service: str | None, settings: ServiceSettings | None = None) -> list[str]:
    """Upgrade the databases; one line per database saying what was done."""
    urls = databases(service, settings or ServiceSettings())
    lines = []
    for done in asyncio.run(_upgrade(urls)):
        where = migrations.shown_url(urls[done.service])
        after = ", ".join(sorted(done.after))
        if done.before == done.after and not done.adopted:
            lines.append(f"{done.service} ({where}): already at {after}")
            continue
        before = ", ".join(sorted(done.before)) or "no revision"
        adopted = " (made before migrations: adopted)" if done.adopted else ""
        lines.append(f"{done.service} ({where}): {before}{adopted} -> {after}")
    return lines


def status(service: str | None, settings: ServiceSettings | None = None) -> list[Schema]:
    return asyncio.run(_status(databases(service, settings or ServiceSettings())))
