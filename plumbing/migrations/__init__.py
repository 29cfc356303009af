"""Schema migrations (Alembic) of the services' databases.

Two services keep state, each in a database of its own: renewal (the journey ledger) and messaging
(drafts, sends, the built-in SM stand-in); careteam keeps none. Each database holds two migration
branches of this one environment (``env.py``):

- ``outbox``: the outbox and inbox tables of ``plumbing.outbox`` (``plumbing/migrations/outbox``),
  the same in both databases;
- the service's own tables (``services/<name>/migrations``), labelled with the service's name.

A database is current when both of its branches are at their head. The first revision of each branch
is exactly the schema ``create_all`` made before migrations existed: a database made that way (tables,
no ``alembic_version``) is stamped at those first revisions and then upgraded, so nothing is recreated
(one made by ``create_all`` of the current models, as some tests do, is stamped at head).

Upgrades run in one transaction; on PostgreSQL instances starting together take turns (an advisory
lock), and a failed upgrade leaves the schema as it was. SQLite gets ``render_as_batch`` (its ALTER
TABLE is limited, so a changed table is copied).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class Branch:
    """One line of revisions: where its scripts are and the models its tables come from."""

    name: str
    directory: Path
    metadata: Callable[[], MetaData]


def _outbox() -> MetaData:
    from plumbing.outbox import OutboxBase

    return OutboxBase.metadata


def _renewal() -> MetaData:
    from services.renewal.adapters.ledger import Base

    return Base.metadata


def _messaging() -> MetaData:
    from services.messaging.adapters.storage import Base

    return Base.metadata


def _journey() -> MetaData:
    from services.journey.adapters.ledger import Base

    return Base.metadata


BRANCHES: Mapping[str, Branch] = {
    "outbox": Branch("outbox", HERE / "outbox", _outbox),
    "renewal": Branch("renewal", ROOT / "services" / "renewal" / "migrations", _renewal),
    "messaging": Branch("messaging", ROOT / "services" / "messaging" / "migrations", _messaging),
    "journey": Branch("journey", ROOT / "services" / "journey" / "migrations", _journey),
}

DATABASES: Mapping[str, tuple[str, ...]] = {
    "renewal": ("outbox", "renewal"),
    "messaging": ("outbox", "messaging"),
    "journey": ("outbox", "journey"),
}
"""Each stateful service's database and the branches it holds."""

BEFORE_MIGRATIONS: Mapping[str, frozenset[str]] = {
    "renewal": frozenset({"renewals", "journey_steps", "outbox", "processed_events"}),
    "messaging": frozenset(
        {"message_drafts", "message_sends", "builtin_sm_messages", "outbox", "processed_events"}
    ),
}
"""The tables ``create_all`` made before migrations existed, which the first revisions create (a
service added later has none)."""

LOCK = "SELECT pg_advisory_xact_lock(hashtext('rxsm-migrations'))"


class SchemaError(RuntimeError):
    """The database's schema is not one this code can use or upgrade."""


def metadata_of(service: str) -> MetaData:
    """Every table of ``service``'s database, as the models declare them (the migrations' target)."""
    merged = MetaData()
    for branch in DATABASES[service]:
        for table in BRANCHES[branch].metadata().tables.values():
            table.to_metadata(merged)
    return merged


def config(
    service: str, connection: Connection | None = None, branches: tuple[str, ...] = ()
) -> Config:
    """The Alembic configuration of ``service``'s database (without an ini file).

    ``branches``: compare only these branches' tables when autogenerating (all of the database's by
    default)."""
    if service not in DATABASES:
        raise SchemaError(f"{service} keeps no tables (stateful services: {', '.join(DATABASES)})")
    found = Config()
    found.set_main_option("script_location", str(HERE))
    found.set_main_option("path_separator", "os")
    found.set_main_option("truncate_slug_length", "60")
    found.set_main_option(
        "version_locations",
        ":".join(str(BRANCHES[branch].directory) for branch in DATABASES[service]),
    )
    found.attributes["connection"] = connection
    found.attributes["service"] = service
    found.attributes["tables"] = {
        table
        for branch in branches or DATABASES[service]
        for table in BRANCHES[branch].metadata().tables
    }
    return found


def heads(service: str) -> set[str]:
    """The head revision of each of ``service``'s branches: what this code needs."""
    return set(ScriptDirectory.from_config(config(service)).get_heads())


def current(connection: Connection) -> set[str]:
    """The revisions the database is at (none for an empty database or one made by create_all)."""
    return set(MigrationContext.configure(connection).get_current_heads())


def differences(connection: Connection, service: str) -> list[Any]:
    """What autogenerate would change to make the database match the models (empty: they match)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata_of(service)))


@dataclass(frozen=True)
class Upgraded:
    service: str
    before: frozenset[str]
    after: frozenset[str]
    adopted: bool
    """The database was made by create_all (without migrations) and was stamped first."""


def _adopt(connection: Connection, cfg: Config, service: str) -> bool:
    """Stamp a database made by ``create_all`` (no migration history) at the revisions it matches:
    head for the current models, the first revisions for the schema before migrations. False for an
    empty database; ``SchemaError`` for tables of another origin."""
    existing = set(inspect(connection).get_table_names())
    present = set(metadata_of(service).tables) & existing
    if not present:
        return False
    script = ScriptDirectory.from_config(cfg)
    if not differences(connection, service):
        command.stamp(cfg, script.get_heads())
    elif frozenset(present) == BEFORE_MIGRATIONS.get(service):
        command.stamp(cfg, script.get_bases())
    else:
        raise SchemaError(
            f"the {service} database has tables ({', '.join(sorted(present))}) but no migration "
            "history, and they are neither this release's nor those made before migrations: "
            "move it aside"
        )
    return True


def _upgrade(connection: Connection, service: str) -> Upgraded:
    if connection.dialect.name == "postgresql":
        connection.execute(text(LOCK))
    cfg = config(service, connection)
    before = current(connection)
    adopted = not before and _adopt(connection, cfg, service)
    try:
        command.upgrade(cfg, "heads")
    except CommandError as error:
        raise SchemaError(f"the {service} database cannot be upgraded: {error}") from error
    return Upgraded(service, frozenset(before), frozenset(current(connection)), adopted)


async def upgrade(engine: AsyncEngine, service: str) -> Upgraded:
    """Bring ``service``'s database to head in one transaction (adopting a create_all database)."""
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade, service)


async def check(engine: AsyncEngine, service: str) -> None:
    """Raise ``SchemaError`` unless the database is at head (or ahead of this code, which is
    allowed: a rolled-back release runs on its successor's additive migrations)."""
    needed = heads(service)
    async with engine.connect() as connection:
        found = await connection.run_sync(current)
    known = _known(service)
    if found != needed and found <= known:
        raise SchemaError(
            f"the {service} database is at {', '.join(sorted(found)) or 'no revision'}, this code "
            f"needs {', '.join(sorted(needed))}: run `rxsm db upgrade --service {service}` "
            "(or start with RXSM_DB_MIGRATE=true)"
        )


def _known(service: str) -> set[str]:
    return {
        script.revision for script in ScriptDirectory.from_config(config(service)).walk_revisions()
    }


async def prepare_schema(engine: AsyncEngine, service: str, migrate: bool) -> Upgraded | None:
    """At a service's start: upgrade its database when ``migrate``, else check it is current."""
    if migrate:
        return await upgrade(engine, service)
    await check(engine, service)
    return None


def shown_url(url: str) -> str:
    """A database URL without its password (for output and logs)."""
    return make_url(url).render_as_string(hide_password=True)


def revision(branch: str, message: str, workdir: Path) -> Any:
    """Autogenerate the next revision of ``branch`` from its models (a developer's tool).

    The models are compared with an empty SQLite database upgraded to head in ``workdir``; review the
    script written under the branch's directory before committing it (SQLite shows no server-side
    details: check the PostgreSQL side by hand)."""
    from sqlalchemy import create_engine

    service = next(name for name, held in DATABASES.items() if branch in held)
    engine = create_engine(f"sqlite:///{workdir / 'head.db'}")
    script = ScriptDirectory.from_config(config(service))
    first = branch not in {label for s in script.walk_revisions() for label in s.branch_labels}
    number = 1 if first else len(list(script.iterate_revisions(f"{branch}@head", "base"))) + 1
    revising = config(service, None, (branch,))
    for hook, options in (("fix", "check --fix --quiet"), ("format", "format --quiet")):
        revising.set_section_option("post_write_hooks", f"ruff_{hook}.type", "module")
        revising.set_section_option("post_write_hooks", f"ruff_{hook}.module", "ruff")
        revising.set_section_option(
            "post_write_hooks", f"ruff_{hook}.options", f"{options} REVISION_SCRIPT_FILENAME"
        )
    revising.set_section_option("post_write_hooks", "hooks", "ruff_fix ruff_format")
    with engine.begin() as connection:
        command.upgrade(config(service, connection), "heads")
        revising.attributes["connection"] = connection
        return command.revision(
            revising,
            message,
            autogenerate=True,
            head="base" if first else f"{branch}@head",
            branch_label=branch if first else None,
            version_path=str(BRANCHES[branch].directory),
            rev_id=f"{branch}_{number:04d}",
        )
