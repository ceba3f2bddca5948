"""Engine, transactions and migrations."""

from __future__ import annotations

import ast
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from idp_mcp.store.loop_guard import install_loop_guard
from idp_mcp.store.transaction_tally import note_transaction

if TYPE_CHECKING:
    from alembic.config import Config

    from idp_mcp.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


SqliteSynchronous = Literal["full", "normal"]


def create_db_engine(
    url: str,
    *,
    sqlite_synchronous: SqliteSynchronous = "full",
    pool_size: int = 10,
    max_overflow: int = 20,
    pool_timeout: float = 30.0,
    loop_guard: bool = False,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout so writers queue.

    ``sqlite_synchronous``: ``full`` syncs the write-ahead log to disk at every commit, so a commit that was
    answered survives a power loss or an OS crash; ``normal`` syncs only at checkpoints, so the last commits before
    such a crash may roll back (a process crash loses nothing either way). The pool settings apply to PostgreSQL:
    ``pool_size`` connections stay open, ``max_overflow`` more may open under load, and a request waits at most
    ``pool_timeout`` seconds for one. ``loop_guard`` makes database work on an event-loop thread raise (see
    :mod:`idp_mcp.store.loop_guard`).
    """
    engine = _create_engine(url, sqlite_synchronous, pool_size, max_overflow, pool_timeout)
    if loop_guard:
        install_loop_guard(engine)
    return engine


def engine_from_settings(settings: Settings) -> Engine:
    """The engine the server runs on, configured by the IDP_MCP_DB_*, IDP_MCP_SQLITE_* and debug settings."""
    return create_db_engine(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        loop_guard=settings.debug_loop_guard,
    )


def _create_engine(
    url: str, sqlite_synchronous: SqliteSynchronous, pool_size: int, max_overflow: int, pool_timeout: float
) -> Engine:
    if sqlite_synchronous not in ("full", "normal"):
        raise ValueError(f"sqlite_synchronous must be 'full' or 'normal', not {sqlite_synchronous!r}")
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Keep connections open: connect + PRAGMAs per transaction cost ~0.5-3 ms, and closing the last connection
        # to a WAL database checkpoints it.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=QueuePool,
            pool_size=8,
            max_overflow=40,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Connection) -> None:
            # Take the write lock up front so concurrent read-then-write transactions queue on the busy
            # timeout instead of failing with "database is locked" half-way. Read-only transactions
            # (Database.read) take no lock: in WAL mode they never wait for a writer.
            statement = "BEGIN" if conn.get_execution_options().get("idp_read_only", False) else "BEGIN IMMEDIATE"
            # Straight on the DBAPI connection: through exec_driver_sql this cost ~40 us of SQLAlchemy's execution
            # machinery per transaction. Errors still surface as SQLAlchemy's (OperationalError on a lock timeout).
            try:
                conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

        # pysqlite's own transaction handling would emit BEGIN itself; let the listener above do it.
        @event.listens_for(engine, "connect")
        def _sqlite_no_autobegin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout
    )


@dataclass(frozen=True)
class _Unit:
    """The transaction of a unit of work in progress (see :meth:`Database.unit_of_work`)."""

    db: Database
    conn: Connection
    writes: bool


_unit: ContextVar[_Unit | None] = ContextVar("idp_mcp_unit_of_work", default=None)


class Database:
    """A thin owner of the engine: ``with db.transaction() as conn`` commits on success, rolls back on error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time, and a writer that finds the lock taken polls for it with sleeps of
        # 1, 2, 5, 10 ... 100 ms. Queue this process's writers on a lock of our own instead: they then run one
        # after the other without sleeping (other processes still meet the busy timeout).
        self._write_lock = threading.RLock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def unit_of_work(self, *, writes: bool) -> Iterator[None]:
        """One transaction for a whole use case: the :meth:`transaction` and :meth:`read` blocks run inside this
        block (in this thread) join it instead of opening their own, so the use case commits or rolls back as one.

        A joined write block runs in a savepoint, so a caller that catches its error (a unique violation) goes on
        in a transaction that is still usable. In a unit that only reads (``writes=False``), a write block opens a
        transaction of its own, as without the unit: a read that turned into a write could fail on SQLite. A unit
        inside a unit joins the outer one.
        """
        if _unit.get() is not None:
            yield
            return
        with self.transaction() if writes else self.read() as conn:
            token = _unit.set(_Unit(self, conn, writes))
            try:
                yield
            finally:
                _unit.reset(token)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        unit = _unit.get()
        if unit is not None and unit.db is self and unit.writes:
            with unit.conn.begin_nested():
                yield unit.conn
            return
        note_transaction("write")
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite it does not take the write lock."""
        unit = _unit.get()
        if unit is not None and unit.db is self:
            yield unit.conn
            return
        note_transaction("read")
        with self.engine.connect() as conn:
            conn = conn.execution_options(idp_read_only=True)
            with conn.begin():
                yield conn

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        run_migrations(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def run_migrations(engine: Engine) -> None:
    """Upgrade to the head revision. Alembic (+ Mako, Pygments: ~0.1 s and ~9 MB) is imported only when the
    database is not already there, which on every start but the first after an upgrade it is."""
    heads = head_revisions()
    if heads is not None and stored_revisions(engine) == heads:
        return
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def stored_revisions(engine: Engine) -> frozenset[str] | None:
    """The revisions recorded in the database, or None when it has no version table (or cannot be read: then
    Alembic runs and reports whatever is wrong)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return frozenset(row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version")))
    except DBAPIError:
        return None


@cache
def head_revisions() -> frozenset[str] | None:
    """The head revisions of ``migrations/versions``, read from each script's ``revision`` and ``down_revision``
    assignments without importing Alembic; None when a script does not state them as literals (Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(value)
                except (ValueError, TypeError):
                    return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):
            parents.update(str(parent) for parent in down)
        elif down is not None:
            return None
    return frozenset(revisions - parents) or None
