"""The loop guard: database work on an event-loop thread raises; in a worker thread or outside a loop it passes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from idp_mcp.core.identity import IdentityCore
from idp_mcp.settings import Settings
from idp_mcp.store import loop_guard
from idp_mcp.store.db import Database, create_db_engine, engine_from_settings
from idp_mcp.store.loop_guard import BlockingDatabaseCall, blocking_allowed

Taken = Callable[[], list[str]]


@pytest.fixture
def violations() -> Iterator[Taken]:
    """The refusals this test caused so far, taken out of the record that the suite checks after every test (these
    tests cause them on purpose)."""
    before = len(loop_guard.VIOLATIONS)

    def taken() -> list[str]:
        caused = loop_guard.VIOLATIONS[before:]
        del loop_guard.VIOLATIONS[before:]
        return caused

    yield taken
    taken()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(create_db_engine(f"sqlite:///{tmp_path / 'guarded.db'}", loop_guard=True))
    yield database
    database.dispose()


def _select_one(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(text("SELECT 1")).scalar_one())


def test_a_transaction_on_the_event_loop_raises_and_is_recorded(
    db: Database, violations: Taken, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_the_loop() -> None:
        with db.transaction():
            pass

    with caplog.at_level(logging.ERROR), pytest.raises(BlockingDatabaseCall, match="connection checkout"):
        anyio.run(on_the_loop)
    assert any("blocking database work on the event loop" in record.message for record in caplog.records)
    caused = violations()
    assert len(caused) == 1 and "connection checkout" in caused[0]


def test_a_read_on_the_event_loop_raises_too(db: Database, violations: Taken) -> None:
    async def on_the_loop() -> int:
        return _select_one(db)

    with pytest.raises(BlockingDatabaseCall):
        anyio.run(on_the_loop)
    assert len(violations()) == 1


def test_the_same_work_in_a_worker_thread_passes(db: Database, violations: Taken) -> None:
    async def in_a_thread() -> int:
        return await anyio.to_thread.run_sync(_select_one, db)

    assert anyio.run(in_a_thread) == 1
    assert _select_one(db) == 1  # and outside any event loop (command line, bootstrap before serving)
    with db.transaction() as conn:
        conn.execute(text("SELECT 1"))
    assert violations() == []


def test_a_connection_taken_in_a_thread_and_used_on_the_loop_raises_at_the_statement(
    db: Database, violations: Taken
) -> None:
    async def main() -> None:
        conn = await anyio.to_thread.run_sync(db.engine.connect)
        try:
            with pytest.raises(BlockingDatabaseCall, match="statement SELECT"):
                conn.execute(text("SELECT 1"))
        finally:
            await anyio.to_thread.run_sync(conn.close)

    anyio.run(main)
    assert [message.split(" (")[1].split(")")[0] for message in violations()] == ["statement SELECT"]


def test_blocking_allowed_lets_work_on_the_loop_inside_the_block_only(db: Database, violations: Taken) -> None:
    async def main() -> None:
        with blocking_allowed("a test"):
            assert _select_one(db) == 1
        with pytest.raises(BlockingDatabaseCall):
            _select_one(db)

    anyio.run(main)
    assert len(violations()) == 1


def test_without_the_guard_nothing_is_refused(tmp_path: Path, violations: Taken) -> None:
    db = Database(create_db_engine(f"sqlite:///{tmp_path / 'plain.db'}"))

    async def on_the_loop() -> int:
        return _select_one(db)

    try:
        assert anyio.run(on_the_loop) == 1
    finally:
        db.dispose()
    assert violations() == []


def test_the_setting_turns_the_guard_on_for_the_servers_engine(tmp_path: Path, violations: Taken) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", debug_loop_guard=True)
    db = Database(engine_from_settings(settings))

    async def on_the_loop() -> int:
        return _select_one(db)

    try:
        with pytest.raises(BlockingDatabaseCall):
            anyio.run(on_the_loop)
    finally:
        db.dispose()
    assert len(violations()) == 1


def test_bootstrap_may_run_on_the_loop_before_serving(tmp_path: Path, violations: Taken) -> None:
    """uvicorn's worker processes build the app (and bootstrap) on their event loop, before accepting requests."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", debug_loop_guard=True)
    core = IdentityCore.from_settings(settings)

    async def build() -> None:
        core.bootstrap()

    try:
        anyio.run(build)
    finally:
        core.close()
    assert violations() == []
