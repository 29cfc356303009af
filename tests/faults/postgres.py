"""The fault tests' PostgreSQL (see localpostgres): skipped where there is none."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import URL

import localpostgres
from localpostgres import create_database, drop_database

__all__ = ["create_database", "drop_database", "postgres_server"]


@contextmanager
def postgres_server() -> Iterator[URL]:
    try:
        with localpostgres.postgres_server() as server:
            yield server
    except localpostgres.PostgresNotInstalled as missing:
        pytest.skip(str(missing))
