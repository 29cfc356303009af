"""The Alembic environment of every service database (see plumbing.migrations).

Alembic runs it with a ``Config`` made by ``plumbing.migrations.config``: the connection to migrate
is in its attributes (the caller holds the transaction), or, offline (``--sql``), only a URL to take
the dialect from.
"""

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.sql.schema import SchemaItem

from plumbing.database import UtcDateTime
from plumbing.migrations import metadata_of

config = context.config
service: str = config.attributes["service"]
compared: set[str] = config.attributes["tables"]


def include_object(
    item: SchemaItem, name: str | None, kind: str, reflected: bool, _: SchemaItem | None
) -> bool:
    """Autogenerate compares only the tables of the branch being revised."""
    table = name if kind == "table" else getattr(getattr(item, "table", None), "name", None)
    return table is None or table in compared


def render_item(kind: str, item: Any, autogen: AutogenContext) -> str | bool:
    """Scripts spell a column type as SQLAlchemy's own, never as rxsm's: a revision must not change
    when the models' code does."""
    if kind == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def process_revision_directives(_: Any, __: Any, directives: list[Any]) -> None:
    """Write no revision when the models did not change."""
    if directives[0].upgrade_ops.is_empty():
        directives[:] = []
        print("The models match the migrations: no revision written.")


options: dict[str, Any] = {
    "target_metadata": metadata_of(service),
    "render_as_batch": True,
    "include_object": include_object,
    "render_item": render_item,
    "compare_type": True,
    "process_revision_directives": process_revision_directives,
}

connection = config.attributes.get("connection")
if connection is None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
else:
    context.configure(connection=connection, **options)
with context.begin_transaction():
    context.run_migrations()
