"""A debugging guard: database work on an event-loop thread raises instead of silently stalling every request.

The server is asynchronous (Starlette under uvicorn) and its database is synchronous (SQLAlchemy): a transaction
run on the event loop's thread stops every other request of the process until it ends (a lock wait on SQLite, a
network round trip on PostgreSQL). Every such call belongs in a worker thread (``anyio.to_thread.run_sync`` or the
token lane of ``oauth/lane.py``). With IDP_MCP_DEBUG_LOOP_GUARD=1 (the test suite sets it, for in-process apps and
for the servers it starts) the engine refuses, on a thread that runs an event loop:

- a connection checkout from the pool (every transaction, read or write, starts with one), and
- a statement, in case a connection checked out in a worker thread is then used on the loop.

The error names the call, is logged, and is remembered in :data:`VIOLATIONS`, so a test fails even when a caller
catches the error. Work that may block the loop on purpose runs inside :func:`blocking_allowed` with its reason.
The exceptions, all of them:

- :meth:`IdentityCore.bootstrap` (migrations, default tenants, keys) runs before the server accepts requests, on the
  loop's thread when uvicorn's worker processes build the app (``--workers``): allowed by :func:`blocking_allowed`.
- The command line runs no event loop (``admin create`` runs one, but its use case hops to a thread): nothing to allow.
- Shutdown (the lifespan's ``core.close()``) only disposes of the pool, which checks nothing out: nothing to allow.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

logger = logging.getLogger(__name__)

#: Every refusal of this process, newest last: the test suite fails a test that caused one.
VIOLATIONS: list[str] = []
_MAX_VIOLATIONS = 100

_allowed = threading.local()


class BlockingDatabaseCall(RuntimeError):
    """Database work was started on a thread that runs an event loop."""


def on_event_loop_thread() -> bool:
    """Whether the calling thread is running an asyncio event loop right now (anyio's worker threads are not)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextmanager
def blocking_allowed(reason: str) -> Iterator[None]:
    """Let this thread do database work on the event loop inside the block; ``reason`` says why that is harmless."""
    previous = getattr(_allowed, "reason", None)
    _allowed.reason = reason
    try:
        yield
    finally:
        _allowed.reason = previous


def check_not_on_event_loop(what: str) -> None:
    """Raise :class:`BlockingDatabaseCall` when called on an event-loop thread outside :func:`blocking_allowed`."""
    if not on_event_loop_thread() or getattr(_allowed, "reason", None) is not None:
        return
    message = (
        f"blocking database work on the event loop ({what}): run it in a worker thread "
        "(anyio.to_thread.run_sync, or run_token_work on the token paths)"
    )
    if len(VIOLATIONS) < _MAX_VIOLATIONS:
        VIOLATIONS.append(message)
    logger.error(message, stack_info=True)
    raise BlockingDatabaseCall(message)


def install_loop_guard(engine: Engine) -> None:
    """Refuse connection checkouts and statements of ``engine`` on an event-loop thread (debugging and tests)."""

    @event.listens_for(engine, "checkout")
    def _checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        check_not_on_event_loop("connection checkout")

    @event.listens_for(engine, "before_cursor_execute")
    def _execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        check_not_on_event_loop(f"statement {statement.split(None, 1)[0] if statement else ''}")
