"""``Database.unit_of_work``: the look-ups and writes of one use case share one transaction, commit or roll back as one;
and the transaction tally counts what a request opens. On the test database (SQLite or PostgreSQL), recorded through
SQLAlchemy's events on the real engine."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from idp_mcp.core.identity import IdentityCore
from idp_mcp.store.db import Database
from idp_mcp.store.transaction_tally import VIOLATIONS, apart, tallied
from tests.support.transactions import TransactionRecorder, summary


@pytest.fixture
def db(core: IdentityCore) -> Iterator[Database]:
    with core.db.transaction() as conn:
        conn.execute(text("CREATE TABLE uow_probe (id VARCHAR(20) PRIMARY KEY)"))
    yield core.db


@pytest.fixture
def recorder(db: Database) -> Iterator[TransactionRecorder]:
    recorder = TransactionRecorder(db.engine)
    yield recorder
    recorder.close()


def insert(db: Database, row_id: str) -> None:
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO uow_probe (id) VALUES (:id)"), {"id": row_id})


def stored(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(str(row[0]) for row in conn.execute(text("SELECT id FROM uow_probe")))


def test_reads_and_writes_inside_a_unit_join_one_transaction(db: Database, recorder: TransactionRecorder) -> None:
    with recorder.recording() as transactions, db.unit_of_work(writes=True):
        insert(db, "a")
        assert stored(db) == ["a"]  # the unit's own write is visible to its reads
        insert(db, "b")
    assert len(transactions) == 1, summary(transactions)
    assert stored(db) == ["a", "b"]


def test_an_error_in_a_unit_rolls_back_every_write_of_the_use_case(db: Database) -> None:
    with pytest.raises(RuntimeError), db.unit_of_work(writes=True):
        insert(db, "a")
        insert(db, "b")
        raise RuntimeError("the use case fails after both writes")
    assert stored(db) == []


def test_a_caught_error_in_a_joined_write_leaves_the_unit_usable(db: Database) -> None:
    # The joined write runs in a savepoint: a unique violation the caller handles (as "exists already") does not
    # abort the transaction (PostgreSQL would refuse every later statement otherwise).
    with db.unit_of_work(writes=True):
        insert(db, "a")
        with pytest.raises(IntegrityError):
            insert(db, "a")
        insert(db, "b")
    assert stored(db) == ["a", "b"]


def test_a_read_only_unit_lets_a_write_open_its_own_transaction(db: Database, recorder: TransactionRecorder) -> None:
    with recorder.recording() as transactions, db.unit_of_work(writes=False):
        assert stored(db) == []
        insert(db, "a")  # not absorbed: a read turned write could fail on SQLite
    assert [t.read_only for t in transactions] == [True, False], summary(transactions)
    assert stored(db) == ["a"]


def test_a_unit_inside_a_unit_joins_the_outer_one(db: Database, recorder: TransactionRecorder) -> None:
    with pytest.raises(RuntimeError), recorder.recording() as transactions, db.unit_of_work(writes=True):
        with db.unit_of_work(writes=True):
            insert(db, "a")
        raise RuntimeError("the outer use case fails")
    assert len(transactions) == 1, summary(transactions)
    assert stored(db) == []


def test_the_tally_follows_work_into_worker_threads_and_leaves_out_what_is_apart(db: Database) -> None:
    async def request() -> list[str]:
        with tallied("GET /probe", budget=5) as tally:
            await anyio.to_thread.run_sync(stored, db)
            with apart("a cache fill that is not this request's use case"):
                await anyio.to_thread.run_sync(stored, db)
            await anyio.to_thread.run_sync(insert, db, "a")
        return tally.transactions

    assert anyio.run(request) == ["read", "write"]


def test_a_request_over_its_budget_is_recorded_and_one_within_it_is_not(db: Database) -> None:
    before = len(VIOLATIONS)
    with tallied("POST /within", budget=1), db.unit_of_work(writes=True):
        insert(db, "a")
        insert(db, "b")
    assert len(VIOLATIONS) == before
    with tallied("POST /over", budget=1):
        insert(db, "c")
        insert(db, "d")
    caught = VIOLATIONS[before:]
    del VIOLATIONS[before:]  # this test's own, on purpose: the suite's guard must not fail it
    assert len(caught) == 1 and caught[0].startswith("POST /over opened 2 transactions (write, write)")
