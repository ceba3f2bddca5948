"""The audit log: who (human and agent) did what, to what, with which outcome. Never a secret."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, event

from idp_mcp.domain import Actor, AuditEntry, Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import audit as repo
from idp_mcp.store.transaction_tally import apart

# Keys whose values are never written, whatever a caller passes in ``details``.
_SECRET_WORDS = ("secret", "token", "password", "code_verifier", "credential", "authorization", "cookie")
# Keys that contain such a word but name no secret: a secret's id says which one was created or revoked.
# Keys that name a setting about tokens or secrets, not one: their values are kept.
_NOT_SECRET = (
    "token_endpoint_auth_method", "secret_id", "secretid", "idtokenalg", "id_token_alg", "accesstokenttl",
    "access_token_ttl",
)  # fmt: skip
_REDACTED = "[redacted]"
_MAX_DETAIL_CHARS = 500

#: How long a queued row (see :meth:`AuditLog.enqueue`) waits at most before the writer thread commits it.
FLUSH_INTERVAL_SECONDS = 0.05
#: Rows kept for a retry when the database refuses a batch; beyond this they are logged and dropped.
_MAX_PENDING = 100_000

logger = logging.getLogger(__name__)


@dataclass
class RidingRow:
    """An audit row that commits with the next change written in its context (see :meth:`AuditLog.riding`)."""

    row: dict[str, Any]
    written: bool = False


_riders: ContextVar[tuple[RidingRow, ...]] = ContextVar("idp_mcp_audit_riders", default=())


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``details`` safe to store: secret-looking keys redacted, long values cut."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS) and lowered not in _NOT_SECRET:
            clean[key] = _REDACTED
        else:
            clean[key] = _scrub_value(value)
    return clean


def _scrub_value(value: Any) -> Any:
    # Lists are scrubbed item by item: a list of dicts may hold secrets as much as a dict does.
    if isinstance(value, dict):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    if isinstance(value, str) and len(value) > _MAX_DETAIL_CHARS:
        return value[:_MAX_DETAIL_CHARS] + "…"
    return value


@dataclass(frozen=True)
class AuditQuery:
    """Filters for :meth:`AuditLog.search`; each one given narrows the rows."""

    limit: int = 50
    since: datetime | None = None
    actor: str | None = None  # the human: a user id, or an email address
    agent: str | None = None  # the OAuth client: its id or its name
    action: str | None = None  # e.g. "application.update" or "tool.createApplication"
    target_id: str | None = None
    before: int | None = None  # only rows older than this event id (in the listing's order): the next page


class AuditLog:
    """Audit rows are written two ways.

    :meth:`write` inside the caller's transaction, so a change and its row commit together. :meth:`enqueue` for
    rows that record no change of their own (an MCP read tool's call, a refused call): the row is queued in memory
    and one writer thread commits the queue in a single transaction at most :data:`FLUSH_INTERVAL_SECONDS` later,
    so a read costs no write transaction. :meth:`flush` commits the queue now; :meth:`recent` flushes first, and
    :meth:`close` (at shutdown) flushes and stops the thread. A row is only lost if the process dies (SIGKILL, power)
    within that interval; other processes and replicas see it after that interval at most.
    """

    def __init__(self, db: Database, clock: Clock, *, flush_interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        self._db = db
        self._clock = clock
        self._flush_interval = flush_interval
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()  # one batch at a time, so rows commit in the order they were queued
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._exit_hook = False

    def _row(
        self,
        actor: Actor,
        action: str,
        target_type: str | None,
        target_id: str | None,
        outcome: str,
        details: dict[str, Any] | None,
        tenant_id: str | None,
    ) -> dict[str, Any]:
        return {
            "at": self._clock(),
            "tenant_id": tenant_id or actor.tenant_id,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "actor_sub": actor.sub,
            "actor_client_id": actor.client_id,
            "actor_client_name": actor.client_name,
            "outcome": outcome,
            "details": scrub(details or {}),
        }

    def write(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        """Write an audit row inside the caller's transaction, so it lands exactly when the change does; rows
        riding in this context (:meth:`riding`) are written with it when this row records a success."""
        row = self._row(actor, action, target_type, target_id, outcome, details, tenant_id)
        queued, riders = self._take_riding(conn) if outcome == "success" else ([], [])
        if not riders:
            repo.insert_entry(conn, row)
        else:
            repo.insert_entries(conn, [*queued, row, *riders])

    def ride(self, conn: Connection) -> None:
        """Write the rows riding in this context (:meth:`riding`) inside the caller's transaction, for a use case
        that asked for a change and found nothing to change (so it writes no row of its own): the call is still
        recorded in the transaction that decided so, without a second one."""
        queued, riders = self._take_riding(conn)
        if riders:
            repo.insert_entries(conn, [*queued, *riders])

    def _take_riding(self, conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows riding in this context and not written yet (now marked written), and with them the rows queued
        before (:meth:`enqueue`): those commit in the same transaction, so none is committed after a change that
        followed it. They go back to the front of the queue if the transaction rolls back."""
        riders = [rider for rider in _riders.get() if not rider.written]
        if not riders:
            return [], []
        for rider in riders:
            rider.written = True
        queued: list[dict[str, Any]] = []
        pending = self._pending
        while pending:
            try:
                queued.append(pending.popleft())
            except IndexError:  # the writer thread took the last ones
                break
        if queued:
            event.listen(conn, "rollback", lambda _conn: self._requeue(queued), once=True)
        return queued, [rider.row for rider in riders]

    def _requeue(self, rows: list[dict[str, Any]]) -> None:
        self._pending.extendleft(reversed(rows))
        self._wake.set()

    @contextmanager
    def riding(
        self,
        actor: Actor,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Iterator[RidingRow]:
        """A success row for the change made inside the block: it is written by the change's own transaction (the
        next :meth:`write` in this context, in worker threads too), so the change and its row commit together and
        need no second transaction. ``written`` says whether that happened; if not, the caller records it itself.
        """
        rider = RidingRow(self._row(actor, action, target_type, target_id, "success", details, None))
        token = _riders.set((*_riders.get(), rider))
        try:
            yield rider
        finally:
            _riders.reset(token)

    def enqueue(
        self,
        actor: Actor,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        """Queue a row that records no change of its own; the writer thread commits it within the flush interval.

        Cheap enough for the event loop: no I/O, no thread hop. Call :meth:`flush` when the row must be durable
        before going on.
        """
        self._pending.append(self._row(actor, action, target_type, target_id, outcome, details, tenant_id))
        if self._writer is None:
            self._start_writer()
        if not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Commit every queued row now, in one transaction (blocking: call it from a worker thread)."""
        with self._flush_lock:
            rows: list[dict[str, Any]] = []
            pending = self._pending
            while pending:
                rows.append(pending.popleft())
            if not rows:
                return
            try:
                with self._db.transaction() as conn:
                    repo.insert_entries(conn, rows)
            except Exception:
                # Keep them for the next flush (in order), unless the queue has grown past any reasonable backlog.
                if len(pending) + len(rows) <= _MAX_PENDING:
                    pending.extendleft(reversed(rows))
                else:
                    logger.error("audit: dropped %d rows the database refused", len(rows))
                raise

    def close(self) -> None:
        """Stop the writer thread and commit what is queued. Safe to call more than once."""
        self._stopping.set()
        self._wake.set()
        with self._start_lock:
            writer, self._writer = self._writer, None
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=10)
        if self._pending:
            self.flush()

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._writer is not None:
                return
            self._stopping.clear()
            writer = threading.Thread(target=self._run_writer, name="idp-mcp-audit-writer", daemon=True)
            writer.start()
            self._writer = writer
            if not self._exit_hook:  # a clean exit that skipped close() still writes what is queued
                self._exit_hook = True
                atexit.register(_close_at_exit, weakref.ref(self))

    def _run_writer(self) -> None:
        stopping = self._stopping
        while not stopping.is_set():
            self._wake.wait()
            # Wait a little so that the rows of many calls share one transaction; stop at once when asked to.
            stopping.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("audit: writing queued rows failed; retrying at the next flush")

    def write_failure(self, actor: Actor, action: str, **kwargs: Any) -> None:
        """Record a refused or failed action in a transaction of its own (the action's was rolled back)."""
        with self._db.transaction() as conn:
            self.write(conn, actor, action, outcome="failure", **kwargs)

    def recent(self, tenant_id: str, limit: int = 50) -> list[AuditEntry]:
        """The newest rows of a tenant, queued rows of this process included."""
        return self.search(tenant_id, AuditQuery(limit=limit))

    def search(self, tenant_id: str, query: AuditQuery) -> list[AuditEntry]:
        """A tenant's rows that match ``query``, newest first, queued rows of this process included."""
        self._flush_before_reading()
        with self._db.read() as conn:
            return self._search(conn, tenant_id, query)

    def search_with_people(self, tenant_id: str, query: AuditQuery) -> tuple[list[AuditEntry], dict[str, str]]:
        """:meth:`search`, and the email of each human in the rows who still exists (user id → email), in one read:
        what the console shows."""
        self._flush_before_reading()
        with self._db.read() as conn:
            entries = self._search(conn, tenant_id, query)
            subjects = sorted({entry.actor_sub for entry in entries if entry.actor_sub})
            return entries, repo.emails(conn, tenant_id, subjects)

    def _flush_before_reading(self) -> None:
        # The queued rows are earlier calls' records (read tools', refused calls'), committed in a write of their own:
        # not part of the search, which only reads.
        with apart("committing the audit rows queued by earlier calls"):
            self.flush()

    def _search(self, conn: Connection, tenant_id: str, query: AuditQuery) -> list[AuditEntry]:
        email = query.actor.strip().lower() if query.actor and "@" in query.actor else None
        return repo.search(
            conn,
            tenant_id,
            limit=query.limit,
            since=query.since,
            actor_sub=query.actor if query.actor and email is None else None,
            actor_email=email,
            agent=query.agent,
            action=query.action,
            target_id=query.target_id,
            before=query.before,
        )


def _close_at_exit(ref: weakref.ref[AuditLog]) -> None:
    log = ref()
    if log is None:
        return
    try:
        log.close()
    except Exception:
        logger.exception("audit: rows still queued at exit could not be written")
