"""The token endpoints' worker lane: one thread per event loop on SQLite, anyio's default pool otherwise."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
from sqlalchemy import create_engine

from idp_mcp.oauth.lane import run_token_work
from idp_mcp.store.db import Database, create_db_engine


def _overlap(db: Database | None) -> int:
    """How many of eight concurrent pieces of work ran at the same time."""
    lock = threading.Lock()
    running, most = 0, 0

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(run_token_work, db, work)

    anyio.run(main)
    return most


def test_sqlite_token_work_runs_one_at_a_time(tmp_path: Path) -> None:
    db = Database(create_db_engine(f"sqlite:///{tmp_path / 'lane.db'}"))
    try:
        assert _overlap(db) == 1
    finally:
        db.dispose()


def test_other_databases_and_network_bound_work_use_the_shared_pool() -> None:
    postgres = Database(create_engine("postgresql://127.0.0.1:5432/test"))  # never connects here
    assert _overlap(postgres) > 1
    assert _overlap(None) > 1


def test_returns_the_work_result_and_raises_its_error(tmp_path: Path) -> None:
    db = Database(create_db_engine(f"sqlite:///{tmp_path / 'lane.db'}"))

    def fail() -> None:
        raise ValueError("boom")

    async def main() -> int:
        assert await run_token_work(db, lambda a, b: a + b, 2, 3) == 5
        try:
            await run_token_work(db, fail)
        except ValueError as exc:
            return len(str(exc))
        return -1

    try:
        assert anyio.run(main) == 4
    finally:
        db.dispose()
