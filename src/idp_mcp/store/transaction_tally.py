"""A debugging guard: one use case, one transaction. Counts the transactions a request (or an MCP tool call) opens.

Each use case of the core is meant to be one function, called with one thread hop from its adapter (a page, an
endpoint, a tool) and doing one transaction, so that it commits or fails as a whole and does not queue twice
behind other writers. With IDP_MCP_DEBUG_TRANSACTION_TALLY=1 (the test suite sets it) every HTTP request and every
MCP tool call is tallied, and one that opens more transactions than its budget is remembered in
:data:`VIOLATIONS` (the test that caused it fails). The budget is one transaction, unless the caller of
:func:`tallied` gives a request more (the app's ``TRANSACTION_BUDGETS``, each with its reason). Not counted is the
work a caller marks with :func:`apart` and a reason, because it is not the request's use case: the bearer check of
``/mcp`` (its revocation check, at most once per 5 s per token), a cache fill, the audit row of a failure written after
the use case rolled back.

Transactions are counted where they begin (:meth:`Database.transaction` and :meth:`Database.read`); the tally
follows the request into worker threads because anyio and Starlette run thread work in a copy of the caller's
context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Every request of this process that went over its budget, newest last: the test suite fails a test that caused one.
VIOLATIONS: list[str] = []
_MAX_VIOLATIONS = 100


@dataclass
class Tally:
    """The transactions one request or tool call opened, in order: ``read`` or ``write``."""

    label: str
    budget: int = 1
    transactions: list[str] = field(default_factory=list)
    closed: bool = False


_current: ContextVar[Tally | None] = ContextVar("idp_mcp_transaction_tally", default=None)


def note_transaction(kind: str) -> None:
    """Count a transaction that is beginning (a no-op outside a tally)."""
    tally = _current.get()
    if tally is not None and not tally.closed:
        tally.transactions.append(kind)


@contextmanager
def tallied(label: str, budget: int = 1) -> Iterator[Tally]:
    """Count the transactions opened inside the block (in this context and the threads it hands work to)."""
    tally = Tally(label, budget)
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)
        # A task that outlives the block (an MCP session's loop, started by the request that created it) keeps a
        # copy of the context: what it opens later is not this request's work.
        tally.closed = True
        if len(tally.transactions) > tally.budget:
            message = (
                f"{tally.label} opened {len(tally.transactions)} transactions ({', '.join(tally.transactions)}); "
                f"a use case is one transaction (budget {tally.budget})"
            )
            if len(VIOLATIONS) < _MAX_VIOLATIONS:
                VIOLATIONS.append(message)
            logger.error(message)


@contextmanager
def apart(reason: str) -> Iterator[None]:
    """Work inside the block is not the current request's use case (``reason`` says what it is): not counted."""
    del reason  # documentation at the call site
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)
