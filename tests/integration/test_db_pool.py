"""PostgreSQL: the connection pool follows IDP_MCP_DB_POOL_SIZE, IDP_MCP_DB_MAX_OVERFLOW and IDP_MCP_DB_POOL_TIMEOUT."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from idp_mcp.settings import Settings
from idp_mcp.store.db import Database, engine_from_settings
from tests.support.databases import DB_KIND

pytestmark = pytest.mark.skipif(DB_KIND != "postgresql", reason="the pool settings are PostgreSQL's")


def test_a_request_waits_at_most_the_pool_timeout_once_size_and_overflow_are_in_use(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, db_pool_size=1, db_max_overflow=1, db_pool_timeout=0.5
    )
    db = Database(engine_from_settings(settings))
    try:
        assert isinstance(db.engine.pool, QueuePool) and db.engine.pool.size() == 1
        with db.read() as first, db.read() as second:  # the pool's one connection, and one of overflow
            assert first.execute(text("SELECT 1")).scalar_one() == second.execute(text("SELECT 2")).scalar_one() - 1
            started = time.monotonic()
            with pytest.raises(PoolTimeout), db.read():
                pass
            assert 0.4 < time.monotonic() - started < 5
        with db.read() as conn:  # free again
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.dispose()
