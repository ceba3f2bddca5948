"""A use case whose refusal must still be written: a wrong code stays counted, the audit row of a refusal stays."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from idp_mcp.errors import IdpError
from idp_mcp.store.db import Database

T = TypeVar("T")


def committed(db: Database, work: Callable[[], T]) -> T:
    """Run ``work`` in one transaction (the caller's unit of work, when there is one) that commits even when
    ``work`` fails with an :class:`IdpError`, which is raised after. Each write of ``work`` is a block of its own
    (a savepoint inside the unit), so a failing block leaves nothing half done; the blocks before it stay."""
    with db.unit_of_work(writes=True):
        try:
            return work()
        except IdpError as exc:
            error = exc
    raise error
