"""The audit log: who (human and agent) did what, to what, with which outcome. Never a secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from idp_mcp.domain import Actor, AuditEntry, Clock
from idp_mcp.store.db import Database
from idp_mcp.store.repos import audit as repo

# Keys whose values are never written, whatever a caller passes in ``details``.
_SECRET_WORDS = ("secret", "token", "password", "code_verifier", "credential", "authorization", "cookie")
_REDACTED = "[redacted]"
_MAX_DETAIL_CHARS = 500


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``details`` safe to store: secret-looking keys redacted, long values cut."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS) and lowered not in ("token_endpoint_auth_method",):
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


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

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
        """Write an audit row inside the caller's transaction, so it lands exactly when the change does."""
        repo.insert_entry(
            conn,
            {
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
            },
        )

    def write_failure(self, actor: Actor, action: str, **kwargs: Any) -> None:
        """Record a refused or failed action in a transaction of its own (the action's was rolled back)."""
        with self._db.transaction() as conn:
            self.write(conn, actor, action, outcome="failure", **kwargs)

    def recent(self, tenant_id: str, limit: int = 50) -> list[AuditEntry]:
        with self._db.transaction() as conn:
            return repo.recent(conn, tenant_id, limit)
