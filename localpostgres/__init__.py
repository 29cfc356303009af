"""A throwaway PostgreSQL server, and fresh databases on it, for the fault tests and the benchmark.

The server is ``RXSM_TEST_DATABASE_URL``'s when set (CI starts a throwaway one), else a throwaway
cluster of Debian's PostgreSQL (``apt-get install postgresql``) started the way ``.ci/run`` does: on a
free loopback port, as the ``postgres`` user when run as root, removed when done.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from localkafka import free_port

URL_ENV = "RXSM_TEST_DATABASE_URL"


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL binaries here, and no server given."""


def installed() -> bool:
    return bool(os.environ.get(URL_ENV)) or _postgres_bin() is not None


def _postgres_bin() -> Path | None:
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = installed[-1] if installed else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_server() -> Iterator[URL]:
    """The server's URL (``postgresql+asyncpg://...``): ``RXSM_TEST_DATABASE_URL``'s when set, else a
    cluster started here (removed after)."""
    given = os.environ.get(URL_ENV)
    if given:
        yield make_url(given)
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise PostgresNotInstalled(f"PostgreSQL is not installed and {URL_ENV} is not set")
    home = Path(tempfile.mkdtemp(prefix="rxsm-faults-pg-"))
    data = home / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if os.getuid() == 0:
        shutil.chown(home, "postgres")

    def run(*command: str) -> None:
        subprocess.run([*as_postgres, *command], check=True, capture_output=True)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "rxsm", "--auth=trust", "-E", "UTF8")
        run(
            str(bin_dir / "pg_ctl"),
            *("-D", str(data), "-l", str(home / "postgres.log"), "-w", "-s"),
            *("-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {home}", "start"),
        )
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "rxsm", "rxsm")
        yield make_url(f"postgresql+asyncpg://rxsm@127.0.0.1:{port}/rxsm")
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)


async def _administer(server: URL, statement: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(server: URL, name: str) -> str:
    """A new empty database ``name`` on ``server``; returns its SQLAlchemy URL."""
    await _administer(server, f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False)


async def drop_database(server: URL, name: str) -> None:
    await _administer(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
