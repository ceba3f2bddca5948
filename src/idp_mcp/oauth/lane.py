"""Where the token endpoints' blocking work runs.

authlib and the database are synchronous, so a token, revocation, introspection or userinfo request runs in a
worker thread. On SQLite those requests share one thread per event loop: SQLite takes one writer at a time and the
GIL runs one Python thread at a time, so sixteen threads only add hand-offs (bench/run, client credentials at 16
connections: 624 req/s with anyio's default 40 threads, 1,100 with one). On PostgreSQL, where requests wait on the
network, they keep anyio's default pool; so does an issuer that may fetch client ID metadata documents (the MCP
issuer): one slow fetch must not hold up every other token request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from anyio.lowlevel import RunVar

from idp_mcp.store.db import Database

T = TypeVar("T")

_SQLITE_LANE: RunVar[CapacityLimiter] = RunVar("idp_mcp_sqlite_token_lane")


def _limiter(db: Database | None) -> CapacityLimiter | None:
    if db is None or db.dialect != "sqlite":
        return None  # anyio's default limiter
    try:
        return _SQLITE_LANE.get()
    except LookupError:
        limiter = CapacityLimiter(1)
        _SQLITE_LANE.set(limiter)
        return limiter


async def run_token_work(db: Database | None, work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a worker thread: in this event loop's one-thread lane on SQLite, in anyio's default pool
    on PostgreSQL or when ``db`` is None (work that may wait on the network)."""
    return await to_thread.run_sync(work, *args, limiter=_limiter(db))
