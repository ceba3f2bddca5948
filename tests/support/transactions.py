"""Recording the transactions an engine opens, with SQLAlchemy's own events (no mock): whether each was read-only
(``Database.read``) or took the write path (``Database.transaction``), how many statements wrote, and on which thread
it ran, so a test can say "this use case opens one read transaction and nothing else"."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event

# A statement that changes rows, or locks them for a change (SELECT ... FOR UPDATE).
_WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|UPSERT)\b|\bFOR UPDATE\b", re.IGNORECASE)


@dataclass
class RecordedTransaction:
    read_only: bool  # opened by Database.read (a deferred BEGIN on SQLite, no write lock)
    thread: int
    thread_name: str
    statements: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return sum(1 for statement in self.statements if _WRITES.search(statement))


@dataclass
class TransactionRecorder:
    """Every transaction ``engine`` opens while :meth:`recording` is active, in the order they began."""

    engine: Engine
    transactions: list[RecordedTransaction] = field(default_factory=list)
    _active: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: dict[int, RecordedTransaction] = field(default_factory=dict)  # by id() of the connection

    def __post_init__(self) -> None:
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "before_cursor_execute", self._execute)
        event.listen(self.engine, "commit", self._end)
        event.listen(self.engine, "rollback", self._end)

    def close(self) -> None:
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._execute)
        event.remove(self.engine, "commit", self._end)
        event.remove(self.engine, "rollback", self._end)

    @contextmanager
    def recording(self) -> Iterator[list[RecordedTransaction]]:
        """Record from now on, into a fresh list (returned), until the block ends."""
        with self._lock:
            self.transactions = []
            self._open.clear()
            self._active = True
        try:
            yield self.transactions
        finally:
            with self._lock:
                self._active = False

    def _begin(self, conn: Connection) -> None:
        with self._lock:
            if not self._active:
                return
            recorded = RecordedTransaction(
                read_only=bool(conn.get_execution_options().get("idp_read_only", False)),
                thread=threading.get_ident(),
                thread_name=threading.current_thread().name,
            )
            self.transactions.append(recorded)
            self._open[id(conn.connection.dbapi_connection)] = recorded

    def _execute(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        with self._lock:
            recorded = self._open.get(id(conn.connection.dbapi_connection))
            if recorded is not None:
                recorded.statements.append(statement)

    def _end(self, conn: Connection) -> None:
        with self._lock:
            self._open.pop(id(conn.connection.dbapi_connection), None)


AUDIT_WRITER = "idp-mcp-audit-writer"  # the thread that commits queued audit rows in batches (core/audit.py)


def of_requests(transactions: list[RecordedTransaction]) -> list[RecordedTransaction]:
    """Without the audit writer's batches: rows queued by this or earlier requests land whenever it wakes, so they
    are not the work of the use case under test."""
    return [t for t in transactions if t.thread_name != AUDIT_WRITER]


def summary(transactions: list[RecordedTransaction]) -> list[str]:
    """One line per transaction, for assertion messages."""
    return [
        f"{'read' if t.read_only else 'WRITE'} on {t.thread_name} ({t.writes} writing statements): "
        + "; ".join(s.split("\n", 1)[0][:80] for s in t.statements)
        for t in transactions
    ]
