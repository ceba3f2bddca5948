"""SQLite transactions: writers take the write lock when they begin, readers take none; the engine settings."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from idp_mcp.settings import Settings
from idp_mcp.store.db import Database, create_db_engine, engine_from_settings


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")

    database = Database(engine)
    with database.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield database
    database.dispose()


def _other_process(db: Database) -> sqlite3.Connection:
    """A connection that knows nothing of this process's writer lock, as another replica's would not."""
    path = db.engine.url.database
    assert path
    return sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)


def test_a_write_transaction_takes_the_write_lock_before_its_first_statement(db: Database) -> None:
    other = _other_process(db)
    with db.transaction() as conn:
        assert conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_a_write_transaction_that_cannot_get_the_lock_fails_with_sqlalchemys_error(db: Database) -> None:
    other = _other_process(db)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), db.transaction():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    with db.transaction() as conn:  # the pool's connection is usable again
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")


def test_a_read_transaction_takes_no_lock_and_does_not_wait_for_a_writer(db: Database) -> None:
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            writing.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(5)
        with db.read() as conn:
            # Inside a transaction (a snapshot) that sees nothing of the writer's uncommitted row.
            assert conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 0
    finally:
        release.set()
        thread.join(5)
    other = _other_process(db)
    with db.read():
        other.execute("BEGIN IMMEDIATE")  # a reader holds no write lock
        other.execute("ROLLBACK")
    other.close()
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1


# --- durability and pool settings ------------------------------------------------------------------------------

SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}


def _synchronous(engine: Engine) -> str:
    with Database(engine).read() as conn:
        return SYNCHRONOUS[int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())]


def test_sqlite_syncs_every_commit_to_disk_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.sqlite_synchronous == "full"
    engine = engine_from_settings(settings)
    try:
        assert _synchronous(engine) == "full"
    finally:
        engine.dispose()


def test_sqlite_synchronous_normal_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_SQLITE_SYNCHRONOUS", "normal")
    engine = engine_from_settings(Settings(data_dir=tmp_path))
    try:
        assert _synchronous(engine) == "normal"
    finally:
        engine.dispose()


def test_every_pooled_sqlite_connection_gets_the_setting(tmp_path: Path) -> None:
    database = Database(create_db_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="normal"))
    try:
        with database.read() as first, database.read() as second:  # two connections of the pool at once
            assert first.connection.dbapi_connection is not second.connection.dbapi_connection
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1
    finally:
        database.dispose()


def test_postgresql_pool_sizes_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDP_MCP_DB_POOL_SIZE", "3")
    monkeypatch.setenv("IDP_MCP_DB_MAX_OVERFLOW", "4")
    monkeypatch.setenv("IDP_MCP_DB_POOL_TIMEOUT", "7.5")
    engine = engine_from_settings(Settings(database_url="postgresql://127.0.0.1:5432/test"))  # never connects here
    try:
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == 3
        assert engine.pool.timeout() == 7.5
        assert engine.pool._max_overflow == 4  # no public accessor; tests/integration/test_db_pool.py shows it at work
    finally:
        engine.dispose()


def test_postgresql_pool_defaults_are_unchanged() -> None:
    engine = engine_from_settings(Settings(database_url="postgresql://127.0.0.1:5432/test"))
    try:
        assert isinstance(engine.pool, QueuePool)
        assert (engine.pool.size(), engine.pool._max_overflow, engine.pool.timeout()) == (10, 20, 30.0)
    finally:
        engine.dispose()
