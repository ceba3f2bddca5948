"""Server-wide keys kept in ``server_secrets`` (replicas share them): read, or made and stored on first use."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from idp_mcp.domain import Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import server_secrets as repo


def stored_or_made(db: Database, clock: Clock, name: str, make: Callable[[], str]) -> str:
    """The key ``name``: the stored one, else ``make()`` stored (another process's wins if it stored one first).

    Call it at start-up, outside any use case: a key made inside a use case's unit of work would be lost if that
    rolled back, while the process kept using it (and what it sealed could never be opened again)."""
    with db.read() as conn:
        stored = repo.get(conn, name)
    if stored is not None:
        return stored
    made = make()
    try:
        with db.transaction() as conn:
            repo.insert_secret(conn, name, made, clock())
        return made
    except IntegrityError:  # another process made it first: use theirs
        with db.read() as conn:
            theirs = repo.get(conn, name)
        assert theirs is not None
        return theirs
